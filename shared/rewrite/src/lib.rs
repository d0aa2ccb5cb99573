//! Streaming HTML rewriting with lol_html: chunk in, chunk out, never the whole page.
//!
//! A [`PageRewriter`] applies a variant's [`Mutation`]s to the origin's HTML and injects the
//! beacon snippet while the page streams through it. Bytes that no mutation targets leave it
//! exactly as they came in, whatever their encoding or validity.
//!
//! A crate of its own, re-exported by `stellwerk-core`, so that its opt-level can differ from
//! the core's: lol_html's parser is compiled here (see [`PageRewriter`]), and the edge's
//! release profile builds this crate for speed and the rest for size.
//!
//! Limits, written down:
//! - Memory: lol_html's own buffers (a tag split across chunks, attribute buffers, the stack
//!   of open elements) may grow to [`MAX_REWRITER_MEMORY`]. Past that, or if a handler fails,
//!   the rewriter bails out gracefully: every byte it holds is flushed unchanged, the rest of
//!   the page passes through untouched and [`RewriteSummary::bail_out`] says why. The page is
//!   never truncated.
//! - Parsing: lol_html runs non-strict. On the rare non-conforming markup where it cannot be
//!   sure of the parsing context (`<select><xmp>…`), a selector may match differently than in
//!   a browser; strict mode would instead abort mid-page and lose the rest of the response.
//! - Charset: the `charset` of the Content-Type header wins; without one (or with a label the
//!   Encoding Standard does not know) the page is read as UTF-8 and lol_html switches to the
//!   charset of the first `<meta charset>` / `<meta http-equiv=content-type>` it meets.
//!   Byte order marks are not sniffed. Encodings that are not ASCII-compatible (UTF-16,
//!   ISO-2022-JP) cannot be rewritten: [`PageRewriter::new`] refuses them.
//! - Only `text/html` is rewritten ([`is_html`]); anything else passes through untouched.
//!
//! Actions: `set_text` escapes its value; `set_html`, `insert_*`, `append`, `prepend` insert
//! it as markup; content actions do nothing on void elements. `set_attr`'s value is the
//! literal the browser will read (`&` and `"` are escaped). `add_class` / `remove_class` take
//! one or more whitespace-separated names and keep the other classes as they are; a tag whose
//! class list does not change stays byte-identical. `hide` appends `display:none !important`
//! to the existing `style` and ignores the value. Selectors qualified by a tag name
//! (`section#hero`) match markedly faster than bare `#id` ones: lol_html then skips the
//! attributes of other tags.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use lol_html::errors::RewritingError;
use lol_html::html_content::{ContentType, DocumentEnd, Element, EndTag};
use lol_html::{
    AsciiCompatibleEncoding, DocumentContentHandlers, ElementContentHandlers, HandlerResult,
    HtmlRewriter, MemorySettings, OutputSink, Selector, Settings,
};

use serde::{Deserialize, Serialize};

/// Upper bound, in bytes, on the memory one page's lol_html buffers may take before the
/// rewriter bails out and passes the rest of the page through.
pub const MAX_REWRITER_MEMORY: usize = 4 << 20;

/// Parsing buffer allocated up front; a start tag longer than this that straddles two chunks
/// makes lol_html grow it (up to [`MAX_REWRITER_MEMORY`]).
const PREALLOCATED_PARSING_BUFFER: usize = 4 << 10;

/// A page with the injection and no mutation is fed to lol_html in slices of this size, so that
/// it stops parsing soon after the snippet is in rather than at the end of a large chunk.
const INJECTION_ONLY_SLICE: usize = 4 << 10;

/// One DOM change: `{selector, action, value, attribute?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mutation {
    pub selector: String,
    pub action: MutationAction,
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MutationAction {
    SetText,
    SetHtml,
    SetAttr,
    RemoveAttr,
    AddClass,
    RemoveClass,
    InsertBefore,
    InsertAfter,
    Append,
    Prepend,
    Remove,
    Hide,
}

/// What is injected into every rewritten page so the browser can send beacons back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInjection {
    /// URL of the beacon script, loaded with `defer`.
    pub beacon_src: String,
    /// The page's decision tokens, already serialised as JSON; exposed as `window.__stellwerk`.
    pub decisions_json: String,
    /// CSP nonce to put on both script elements (see [`csp_nonce`]).
    pub nonce: Option<String>,
}

/// Why a page could not be rewritten, or why rewriting stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RewriteError {
    /// The mutation at this index has a selector lol_html cannot match.
    InvalidSelector { mutation: usize, reason: String },
    /// The mutation at this index names an attribute that cannot be written.
    InvalidAttribute { mutation: usize, reason: String },
    /// [`PageInjection::decisions_json`] is not one JSON value.
    InvalidDecisions(String),
    /// The document's charset is not ASCII-compatible, so lol_html cannot parse it.
    UnsupportedCharset(String),
    /// lol_html's buffers outgrew [`MAX_REWRITER_MEMORY`].
    MemoryLimit(String),
    /// A mutation could not be applied to an element.
    Handler(String),
    /// lol_html stopped without flushing what it held: the output is incomplete.
    Stream(String),
    /// The rewriter was used again after a [`RewriteError::Stream`] error.
    AfterFailure,
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewriteError::InvalidSelector { mutation, reason } => {
                write!(f, "mutation {mutation}: {reason}")
            }
            RewriteError::InvalidAttribute { mutation, reason } => {
                write!(f, "mutation {mutation}: invalid attribute name: {reason}")
            }
            RewriteError::InvalidDecisions(reason) => {
                write!(f, "decisions are not valid JSON: {reason}")
            }
            RewriteError::UnsupportedCharset(label) => {
                write!(
                    f,
                    "charset {label:?} is not ASCII-compatible and cannot be rewritten"
                )
            }
            RewriteError::MemoryLimit(reason) => write!(f, "memory limit exceeded: {reason}"),
            RewriteError::Handler(reason) => write!(f, "mutation failed: {reason}"),
            RewriteError::Stream(reason) => write!(f, "rewriting failed mid-stream: {reason}"),
            RewriteError::AfterFailure => f.write_str("the rewriter already failed"),
        }
    }
}

impl std::error::Error for RewriteError {}

impl From<RewritingError> for RewriteError {
    fn from(error: RewritingError) -> Self {
        match error {
            RewritingError::MemoryLimitExceeded(e) => RewriteError::MemoryLimit(e.to_string()),
            RewritingError::ContentHandlerError(e) => RewriteError::Handler(e.to_string()),
            other => RewriteError::Stream(other.to_string()),
        }
    }
}

/// What happened to one page, known once it has been written to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RewriteSummary {
    /// How many elements each mutation matched, in the order the mutations were given.
    pub matches: Vec<u32>,
    /// Whether the beacon snippet went into the page.
    pub injected: bool,
    /// Why rewriting stopped early, if it did; the rest of the page then passed through as is.
    pub bail_out: Option<RewriteError>,
}

/// Checks that lol_html can match this CSS selector.
pub fn check_selector(selector: &str) -> Result<(), String> {
    selector
        .parse::<Selector>()
        .map(drop)
        .map_err(|e| format!("invalid CSS selector: {e}"))
}

/// Whether a response with this Content-Type is an HTML page we may rewrite (`text/html` only).
pub fn is_html(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("text/html"))
}

/// The `charset` parameter of a Content-Type header, unquoted, if it has one.
pub fn charset_of(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("charset") {
            return None;
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value)
            .trim();
        (!value.is_empty()).then_some(value)
    })
}

/// The nonce that a Content-Security-Policy header allows scripts with: the first
/// `'nonce-…'` source of `script-src`, or of `default-src` when there is no `script-src`.
pub fn csp_nonce(csp_header: &str) -> Option<String> {
    let directives: Vec<(&str, &str)> = csp_header
        .split(';')
        .filter_map(|directive| {
            let directive = directive.trim();
            let end = directive
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(directive.len());
            let (name, sources) = directive.split_at(end);
            (!name.is_empty()).then_some((name, sources))
        })
        .collect();
    // A policy's first directive of a name is the one that counts (CSP3 §2.2.1).
    let sources_of = |wanted: &str| {
        directives
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(wanted))
            .map(|(_, sources)| *sources)
    };
    let sources = sources_of("script-src").or_else(|| sources_of("default-src"))?;
    sources.split_ascii_whitespace().find_map(|source| {
        let prefix = source.get(..7)?;
        let nonce = source.get(7..)?.strip_suffix('\'')?;
        (prefix.eq_ignore_ascii_case("'nonce-") && !nonce.is_empty()).then(|| nonce.to_owned())
    })
}

/// Streams one HTML page through lol_html, applying mutations and the beacon injection.
///
/// Feed it the body chunk by chunk with [`write`](Self::write), then call
/// [`end`](Self::end); rewritten bytes go to `output` as soon as lol_html releases them
/// (a tag split across two chunks is held until it is complete), so the page is never
/// buffered whole. Untouched bytes are forwarded byte-identical.
///
/// Not `Send`: it is meant for one request on one thread (a Worker isolate, a Spin
/// instance, the CLI).
///
/// The output is a trait object, not a type parameter, so that lol_html's parser (generic
/// over its output) is compiled here, in the core, once and at the core's opt-level, rather
/// than in each caller's crate at the caller's (the Worker's is "z", for size).
pub struct PageRewriter<'o> {
    sink: Output<'o>,
    state: State<'o>,
    matches: Rc<[Cell<u32>]>,
    injected: Rc<Cell<bool>>,
    /// No mutation, only the injection: once the snippet is in, lol_html has nothing left to
    /// do and the rest of the page is forwarded unparsed (lol_html would leave it untouched).
    injection_only: bool,
    bail_out: Option<RewriteError>,
}

type Output<'o> = Rc<RefCell<dyn FnMut(&[u8]) + 'o>>;

enum State<'o> {
    Rewriting(Box<HtmlRewriter<'static, SharedSink<'o>>>),
    PassThrough,
    Failed,
}

/// Lets lol_html and the rewriter share one output, so the rewriter can keep writing to it
/// after lol_html bails out.
struct SharedSink<'o>(Output<'o>);

impl OutputSink for SharedSink<'_> {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        // The only other borrower is PageRewriter itself, never while lol_html is running.
        (self.0.borrow_mut())(chunk);
    }
}

impl<'o> PageRewriter<'o> {
    /// Prepares the rewrite of a response with this Content-Type.
    ///
    /// A response that is not `text/html`, or an HTML page with no mutations and no
    /// injection, is passed through untouched without being parsed. Selectors, attribute
    /// names, the decisions JSON and the charset are checked here, before any byte is
    /// written.
    pub fn new(
        mutations: &[Mutation],
        injection: Option<&PageInjection>,
        content_type: Option<&str>,
        output: impl FnMut(&[u8]) + 'o,
    ) -> Result<Self, RewriteError> {
        Self::with_output(
            mutations,
            injection,
            content_type,
            Rc::new(RefCell::new(output)),
        )
    }

    fn with_output(
        mutations: &[Mutation],
        injection: Option<&PageInjection>,
        content_type: Option<&str>,
        sink: Output<'o>,
    ) -> Result<Self, RewriteError> {
        let matches: Rc<[Cell<u32>]> = mutations.iter().map(|_| Cell::new(0)).collect();
        let injected = Rc::new(Cell::new(false));
        let mut rewriter = PageRewriter {
            sink,
            state: State::PassThrough,
            matches,
            injected,
            injection_only: mutations.is_empty() && injection.is_some(),
            bail_out: None,
        };
        if !is_html(content_type) || (mutations.is_empty() && injection.is_none()) {
            return Ok(rewriter);
        }

        let (encoding, from_header) = document_encoding(content_type)?;
        let memory = MemorySettings::new()
            .with_preallocated_parsing_buffer_size(PREALLOCATED_PARSING_BUFFER)
            .with_max_allowed_memory_usage(MAX_REWRITER_MEMORY)
            .with_graceful_bail_out_on_memory_limit_exceeded(true);
        let mut settings = Settings::new()
            .with_encoding(encoding)
            .with_adjust_charset_on_meta_tag(!from_header)
            .with_strict(false)
            .with_memory_settings(memory)
            .with_graceful_bail_out_on_content_handler_error(true);

        for (index, mutation) in mutations.iter().enumerate() {
            let selector: Selector =
                mutation
                    .selector
                    .parse()
                    .map_err(|e| RewriteError::InvalidSelector {
                        mutation: index,
                        reason: format!("invalid CSS selector: {e}"),
                    })?;
            let edit =
                Edit::from_mutation(mutation).map_err(|reason| RewriteError::InvalidAttribute {
                    mutation: index,
                    reason,
                })?;
            let matches = Rc::clone(&rewriter.matches);
            let handler = move |el: &mut Element<'_, '_>| -> HandlerResult {
                if let Some(count) = matches.get(index) {
                    count.set(count.get().saturating_add(1));
                }
                edit.apply(el)
            };
            settings = settings.append_element_content_handler((
                Cow::Owned(selector),
                ElementContentHandlers::default().element(handler),
            ));
        }

        if let Some(injection) = injection {
            settings = with_injection(settings, injection, &rewriter.injected)?;
        }

        let lol = HtmlRewriter::new(settings, SharedSink(Rc::clone(&rewriter.sink)));
        rewriter.state = State::Rewriting(Box::new(lol));
        Ok(rewriter)
    }

    /// Whether this page goes through lol_html (false: its bytes are forwarded as they are).
    pub fn is_rewriting(&self) -> bool {
        matches!(self.state, State::Rewriting(_))
    }

    /// Rewrites the next chunk of the body.
    ///
    /// An `Err` means the output is incomplete and the response must be aborted; a graceful
    /// bail-out (see the module docs) is not an error here and shows in the summary.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), RewriteError> {
        let mut rest = chunk;
        while let State::Rewriting(lol) = &mut self.state {
            if rest.is_empty() {
                return Ok(());
            }
            let slice = if self.injection_only {
                rest.len().min(INJECTION_ONLY_SLICE)
            } else {
                rest.len()
            };
            let (now, later) = rest.split_at(slice);
            rest = later;
            match lol.write(now) {
                Err(error) => self.stop(error)?,
                Ok(()) if self.injection_only && self.injected.get() => self.finish_early()?,
                Ok(()) => {}
            }
        }
        if matches!(self.state, State::Failed) {
            return Err(RewriteError::AfterFailure);
        }
        (self.sink.borrow_mut())(rest);
        Ok(())
    }

    /// Ends lol_html once the injection-only page has its snippet: lol_html flushes the bytes
    /// of a token it still holds unchanged, and the rest of the page passes through.
    fn finish_early(&mut self) -> Result<(), RewriteError> {
        if let State::Rewriting(lol) = std::mem::replace(&mut self.state, State::PassThrough) {
            lol.end().or_else(|error| self.stop(error))?;
        }
        Ok(())
    }

    /// Flushes what lol_html still holds, appends the injection if the page had no better
    /// place for it, and tells what was done.
    pub fn end(mut self) -> Result<RewriteSummary, RewriteError> {
        match std::mem::replace(&mut self.state, State::PassThrough) {
            State::Rewriting(lol) => lol.end().or_else(|error| self.stop(error))?,
            State::PassThrough => {}
            State::Failed => return Err(RewriteError::AfterFailure),
        }
        Ok(RewriteSummary {
            matches: self.matches.iter().map(Cell::get).collect(),
            injected: self.injected.get(),
            bail_out: self.bail_out,
        })
    }

    /// Turns a lol_html error into pass-through when lol_html flushed everything it held.
    fn stop(&mut self, error: RewritingError) -> Result<(), RewriteError> {
        let flushed = matches!(
            error,
            RewritingError::MemoryLimitExceeded(_) | RewritingError::ContentHandlerError(_)
        );
        let error = RewriteError::from(error);
        if flushed {
            self.state = State::PassThrough;
            self.bail_out = Some(error);
            Ok(())
        } else {
            self.state = State::Failed;
            Err(error)
        }
    }
}

/// The encoding to parse with, and whether it came from the Content-Type header.
fn document_encoding(
    content_type: Option<&str>,
) -> Result<(AsciiCompatibleEncoding, bool), RewriteError> {
    let label = content_type.and_then(charset_of);
    // The Encoding Standard ignores labels it does not know, as browsers do.
    let Some((label, encoding)) =
        label.and_then(|l| Some((l, encoding_rs::Encoding::for_label(l.as_bytes())?)))
    else {
        return Ok((AsciiCompatibleEncoding::utf_8(), false));
    };
    AsciiCompatibleEncoding::new(encoding)
        .map(|encoding| (encoding, true))
        .ok_or_else(|| RewriteError::UnsupportedCharset(label.to_owned()))
}

/// Adds the handlers that put the beacon snippet before `</head>`, else before `<body>` (the
/// head ended implicitly), else at the end of the document.
fn with_injection(
    settings: Settings<'static, 'static>,
    injection: &PageInjection,
    injected: &Rc<Cell<bool>>,
) -> Result<Settings<'static, 'static>, RewriteError> {
    let snippet: Rc<str> = beacon_snippet(injection)?.into();

    let (head_snippet, head_done) = (Rc::clone(&snippet), Rc::clone(injected));
    let on_head = move |el: &mut Element<'_, '_>| -> HandlerResult {
        // A self-closing <head/> in foreign content has no end tag to inject before.
        if head_done.get() || !el.can_have_content() {
            return Ok(());
        }
        let (snippet, done) = (Rc::clone(&head_snippet), Rc::clone(&head_done));
        el.on_end_tag(Box::new(move |end: &mut EndTag<'_>| {
            if !done.get() {
                end.before(&snippet, ContentType::Html);
                done.set(true);
            }
            Ok(())
        }))
    };
    let (body_snippet, body_done) = (Rc::clone(&snippet), Rc::clone(injected));
    let on_body = move |el: &mut Element<'_, '_>| -> HandlerResult {
        if !body_done.get() {
            el.before(&body_snippet, ContentType::Html);
            body_done.set(true);
        }
        Ok(())
    };
    let end_done = Rc::clone(injected);
    let on_end = move |end: &mut DocumentEnd<'_>| -> HandlerResult {
        if !end_done.get() {
            end.append(&snippet, ContentType::Html);
            end_done.set(true);
        }
        Ok(())
    };

    let head: Selector = "head"
        .parse()
        .map_err(|e| RewriteError::Stream(format!("head selector: {e}")))?;
    let body: Selector = "body"
        .parse()
        .map_err(|e| RewriteError::Stream(format!("body selector: {e}")))?;
    Ok(settings
        .append_element_content_handler((
            Cow::Owned(head),
            ElementContentHandlers::default().element(on_head),
        ))
        .append_element_content_handler((
            Cow::Owned(body),
            ElementContentHandlers::default().element(on_body),
        ))
        .append_document_content_handler(DocumentContentHandlers::default().end(on_end)))
}

/// The two script elements of the injection, in pure ASCII so the document's charset cannot
/// alter them.
fn beacon_snippet(injection: &PageInjection) -> Result<String, RewriteError> {
    serde_json::from_str::<serde::de::IgnoredAny>(&injection.decisions_json)
        .map_err(|e| RewriteError::InvalidDecisions(e.to_string()))?;
    let nonce = injection
        .nonce
        .as_deref()
        .map(|nonce| format!(" nonce=\"{}\"", escape_attribute(nonce)))
        .unwrap_or_default();
    Ok(format!(
        "<script{nonce}>window.__stellwerk={};</script><script src=\"{}\" defer{nonce}></script>",
        script_safe_json(&injection.decisions_json),
        escape_attribute(&injection.beacon_src),
    ))
}

/// JSON that cannot end its `<script>` element: `<`, `>`, `&` and every non-ASCII character
/// become `\u` escapes. In valid JSON these only occur inside strings, where the escape means
/// the same character.
fn script_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if c.is_ascii() && !matches!(c, '<' | '>' | '&') {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// A double-quoted attribute value, in ASCII (non-ASCII becomes character references).
fn escape_attribute(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c if c.is_ascii() => out.push(c),
            c => out.push_str(&format!("&#x{:x};", u32::from(c))),
        }
    }
    out
}

/// One mutation, ready to apply to each element its selector matches.
enum Edit {
    SetText(String),
    SetHtml(String),
    SetAttribute { name: String, value: String },
    RemoveAttribute(String),
    AddClasses(Vec<String>),
    RemoveClasses(Vec<String>),
    InsertBefore(String),
    InsertAfter(String),
    Append(String),
    Prepend(String),
    Remove,
    Hide,
}

/// The declaration `hide` adds; `!important` so the page's own stylesheets cannot undo it.
const HIDDEN: &str = "display:none !important";

impl Edit {
    fn from_mutation(mutation: &Mutation) -> Result<Self, String> {
        let value = mutation.value.clone();
        // Class names are compared and stored as raw attribute text, where `&` starts a
        // character reference.
        let classes = || {
            mutation
                .value
                .split_ascii_whitespace()
                .map(|class| class.replace('&', "&amp;"))
                .collect()
        };
        Ok(match mutation.action {
            MutationAction::SetText => Edit::SetText(value),
            MutationAction::SetHtml => Edit::SetHtml(value),
            MutationAction::SetAttr => Edit::SetAttribute {
                name: attribute_name(mutation)?,
                // `value` is the literal the browser will read; lol_html escapes `"` only.
                value: value.replace('&', "&amp;"),
            },
            MutationAction::RemoveAttr => Edit::RemoveAttribute(attribute_name(mutation)?),
            MutationAction::AddClass => Edit::AddClasses(classes()),
            MutationAction::RemoveClass => Edit::RemoveClasses(classes()),
            MutationAction::InsertBefore => Edit::InsertBefore(value),
            MutationAction::InsertAfter => Edit::InsertAfter(value),
            MutationAction::Append => Edit::Append(value),
            MutationAction::Prepend => Edit::Prepend(value),
            MutationAction::Remove => Edit::Remove,
            MutationAction::Hide => Edit::Hide,
        })
    }

    fn apply(&self, el: &mut Element<'_, '_>) -> HandlerResult {
        match self {
            Edit::SetText(text) => el.set_inner_content(text, ContentType::Text),
            Edit::SetHtml(html) => el.set_inner_content(html, ContentType::Html),
            Edit::SetAttribute { name, value } => el.set_attribute(name, value)?,
            Edit::RemoveAttribute(name) => el.remove_attribute(name),
            Edit::AddClasses(classes) => {
                if let Some(class) = with_classes(el.get_attribute("class"), classes) {
                    el.set_attribute("class", &class)?;
                }
            }
            Edit::RemoveClasses(classes) => {
                if let Some(class) = without_classes(el.get_attribute("class"), classes) {
                    el.set_attribute("class", &class)?;
                }
            }
            Edit::InsertBefore(html) => el.before(html, ContentType::Html),
            Edit::InsertAfter(html) => el.after(html, ContentType::Html),
            Edit::Append(html) => el.append(html, ContentType::Html),
            Edit::Prepend(html) => el.prepend(html, ContentType::Html),
            Edit::Remove => el.remove(),
            Edit::Hide => {
                let style = el.get_attribute("style").unwrap_or_default();
                let style = style.trim_end();
                let hidden = if style.is_empty() {
                    HIDDEN.to_owned()
                } else if style.ends_with(';') {
                    format!("{style}{HIDDEN}")
                } else {
                    format!("{style};{HIDDEN}")
                };
                el.set_attribute("style", &hidden)?;
            }
        }
        Ok(())
    }
}

/// The attribute of a set_attr / remove_attr mutation, if lol_html can write it in any
/// document encoding.
fn attribute_name(mutation: &Mutation) -> Result<String, String> {
    let name = mutation
        .attribute
        .as_deref()
        .ok_or_else(|| "missing".to_owned())?;
    if name.is_empty() {
        return Err("empty".to_owned());
    }
    match name
        .chars()
        .find(|&c| !c.is_ascii_graphic() || matches!(c, '"' | '\'' | '<' | '>' | '/' | '='))
    {
        Some(c) => Err(format!("{c:?} is not allowed in {name:?}")),
        None => Ok(name.to_owned()),
    }
}

/// The class attribute with `classes` added after the existing ones, or `None` if it already
/// has them all (so the tag stays byte-identical).
fn with_classes(existing: Option<String>, classes: &[String]) -> Option<String> {
    let mut class = existing.unwrap_or_default();
    let mut changed = false;
    for name in classes {
        if class.split_ascii_whitespace().any(|token| token == name) {
            continue;
        }
        if !class.is_empty() && !class.ends_with(|c: char| c.is_ascii_whitespace()) {
            class.push(' ');
        }
        class.push_str(name);
        changed = true;
    }
    changed.then_some(class)
}

/// The class attribute without `classes`, or `None` if it had none of them.
fn without_classes(existing: Option<String>, classes: &[String]) -> Option<String> {
    let existing = existing?;
    let kept: Vec<&str> = existing
        .split_ascii_whitespace()
        .filter(|token| !classes.iter().any(|name| name == token))
        .collect();
    (kept.len() != existing.split_ascii_whitespace().count()).then(|| kept.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn mutation(selector: &str, action: MutationAction, value: &str) -> Mutation {
        Mutation {
            selector: selector.to_owned(),
            action,
            value: value.to_owned(),
            attribute: None,
        }
    }

    fn attribute(selector: &str, action: MutationAction, name: &str, value: &str) -> Mutation {
        Mutation {
            attribute: Some(name.to_owned()),
            ..mutation(selector, action, value)
        }
    }

    /// Runs `input` through a rewriter in chunks of `chunk` bytes.
    fn run(
        mutations: &[Mutation],
        injection: Option<&PageInjection>,
        content_type: &str,
        input: &[u8],
        chunk: usize,
    ) -> (Vec<u8>, RewriteSummary) {
        let mut out = Vec::new();
        let mut rewriter = PageRewriter::new(mutations, injection, Some(content_type), |c| {
            out.extend_from_slice(c)
        })
        .expect("valid rewrite");
        for piece in input.chunks(chunk.max(1)) {
            rewriter.write(piece).expect("write");
        }
        let summary = rewriter.end().expect("end");
        (out, summary)
    }

    fn html(mutations: &[Mutation], input: &str) -> String {
        let (out, _) = run(
            mutations,
            None,
            "text/html; charset=utf-8",
            input.as_bytes(),
            7,
        );
        String::from_utf8(out).expect("utf-8 output")
    }

    use MutationAction::*;

    #[test]
    fn set_text_replaces_content_with_escaped_text() {
        let out = html(
            &[mutation("#t", SetText, "a < b & \"c\"")],
            r#"<h1 id="t">Old <b>bold</b> title</h1><p>keep</p>"#,
        );
        assert_eq!(out, r#"<h1 id="t">a &lt; b &amp; "c"</h1><p>keep</p>"#);
    }

    #[test]
    fn set_text_applies_to_every_match_and_counts_them() {
        let input = "<ul><li>a</li><li class=x>b</li><li>c</li></ul>";
        let (out, summary) = run(
            &[mutation("li", SetText, "z"), mutation("#none", Remove, "")],
            None,
            "text/html",
            input.as_bytes(),
            3,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<ul><li>z</li><li class=x>z</li><li>z</li></ul>"
        );
        assert_eq!(summary.matches, vec![3, 0]);
    }

    #[test]
    fn content_actions_leave_void_elements_alone() {
        let input = r#"<img id="t" src="a.png"><br id="u"/>"#;
        for action in [SetText, SetHtml, Append, Prepend] {
            let out = html(&[mutation("#t, #u", action, "<i>x</i>")], input);
            assert_eq!(out, input, "{action:?}");
        }
    }

    #[test]
    fn set_html_replaces_inner_markup() {
        let out = html(
            &[mutation("div.card", SetHtml, "<em>new</em> &amp; improved")],
            r#"<div class="card"><p>old</p></div>"#,
        );
        assert_eq!(
            out,
            r#"<div class="card"><em>new</em> &amp; improved</div>"#
        );
    }

    #[test]
    fn set_attr_adds_or_replaces_and_escapes_the_literal_value() {
        let out = html(
            &[
                attribute("a.cta", SetAttr, "href", "/shop?src=hero-b&copy=1"),
                attribute("a.cta", SetAttr, "title", r#"say "hi""#),
            ],
            r#"<a class="cta" href='/old' data-x=1>Go</a>"#,
        );
        assert_eq!(
            out,
            r#"<a class="cta" href="/shop?src=hero-b&amp;copy=1" data-x=1 title="say &quot;hi&quot;">Go</a>"#
        );
    }

    #[test]
    fn remove_attr_drops_only_that_attribute() {
        let out = html(
            &[attribute("input", RemoveAttr, "disabled", "")],
            r#"<input type="text" disabled value='a "b"'><input>"#,
        );
        assert_eq!(out, r#"<input type="text" value='a "b"'><input>"#);
    }

    #[test]
    fn add_class_keeps_existing_classes_and_never_duplicates() {
        let hero = mutation("#hero", AddClass, "hero--highlight");
        assert_eq!(
            html(
                std::slice::from_ref(&hero),
                r#"<section id="hero" class="hero">x</section>"#
            ),
            r#"<section id="hero" class="hero hero--highlight">x</section>"#
        );
        // Already there: the tag stays byte-identical, single quotes and all.
        let present = r#"<section id=hero class='hero--highlight  hero'>x</section>"#;
        assert_eq!(html(std::slice::from_ref(&hero), present), present);
        assert_eq!(
            html(std::slice::from_ref(&hero), "<section id=hero>x</section>"),
            r#"<section id=hero class="hero--highlight">x</section>"#
        );
    }

    #[test]
    fn add_class_reaches_nested_matches() {
        let out = html(
            &[mutation("div", AddClass, "seen")],
            r#"<div class="a"><div><div class="seen b"></div></div></div>"#,
        );
        assert_eq!(
            out,
            r#"<div class="a seen"><div class="seen"><div class="seen b"></div></div></div>"#
        );
    }

    #[test]
    fn remove_class_keeps_the_other_classes() {
        let remove = [mutation("p", RemoveClass, "old")];
        assert_eq!(
            html(
                &remove,
                r#"<p class="a old  b old">x</p><p class="c">y</p><p>z</p>"#
            ),
            r#"<p class="a b">x</p><p class="c">y</p><p>z</p>"#
        );
    }

    #[test]
    fn insertions_go_around_and_inside_the_element() {
        let out = html(
            &[
                mutation("#t", InsertBefore, "<hr>"),
                mutation("#t", InsertAfter, "<p>after</p>"),
                mutation("#t", Prepend, "<b>first</b>"),
                mutation("#t", Append, "<b>last</b>"),
            ],
            r#"<div><span id="t">mid</span></div>"#,
        );
        assert_eq!(
            out,
            r#"<div><hr><span id="t"><b>first</b>mid<b>last</b></span><p>after</p></div>"#
        );
    }

    #[test]
    fn insert_around_a_void_element() {
        let out = html(
            &[
                mutation("img", InsertBefore, "<figure>"),
                mutation("img", InsertAfter, "</figure>"),
            ],
            r#"<img src="a.png" alt="a &quot;b&quot;">"#,
        );
        assert_eq!(
            out,
            r#"<figure><img src="a.png" alt="a &quot;b&quot;"></figure>"#
        );
    }

    #[test]
    fn remove_takes_the_element_and_its_content() {
        let out = html(
            &[mutation(".promo", Remove, "")],
            r#"<main><div class="promo"><p>sale <b>now</b></p></div><p>stay</p><br class="promo"></main>"#,
        );
        assert_eq!(out, "<main><p>stay</p></main>");
    }

    #[test]
    fn hide_keeps_the_existing_style() {
        let hide = [mutation(".b", Hide, "")];
        assert_eq!(
            html(&hide, r#"<div class="b" style="color: red">x</div>"#),
            r#"<div class="b" style="color: red;display:none !important">x</div>"#
        );
        assert_eq!(
            html(&hide, r#"<div class="b" style='margin:0; '>x</div>"#),
            r#"<div class="b" style="margin:0;display:none !important">x</div>"#
        );
        assert_eq!(
            html(&hide, r#"<div class=b>x</div>"#),
            r#"<div class=b style="display:none !important">x</div>"#
        );
    }

    #[test]
    fn mutations_on_one_element_apply_in_order() {
        let out = html(
            &[
                mutation("#hero a.cta", SetText, "Find your gear"),
                mutation("#hero", AddClass, "hero--highlight"),
                attribute("#hero a.cta", SetAttr, "href", "/shop?src=hero-b"),
                mutation("#hero a.cta", SetText, "Shop now"),
            ],
            r#"<section id="hero" class="hero"><a class="cta" href="/shop">Browse</a></section>"#,
        );
        assert_eq!(
            out,
            r#"<section id="hero" class="hero hero--highlight"><a class="cta" href="/shop?src=hero-b">Shop now</a></section>"#
        );
    }

    #[test]
    fn windows_1252_page_is_rewritten_without_mojibake() {
        // "café" and "Grüße" in windows-1252 are single bytes per letter.
        let input = b"<p class=\"caf\xe9\">Caf\xe9 cr\xe8me</p><h1>x</h1>";
        let (out, _) = run(
            &[
                mutation("h1", SetText, "Grüße → Zürich"),
                mutation("p", AddClass, "neu"),
            ],
            None,
            "text/html; charset=windows-1252",
            input,
            5,
        );
        assert_eq!(
            out,
            b"<p class=\"caf\xe9 neu\">Caf\xe9 cr\xe8me</p><h1>Gr\xfc\xdfe &#8594; Z\xfcrich</h1>"
        );
    }

    #[test]
    fn meta_charset_is_honoured_when_the_header_has_none() {
        let input = b"<meta charset=\"iso-8859-1\"><h1>x</h1>";
        let (out, _) = run(&[mutation("h1", SetText, "é")], None, "text/html", input, 4);
        assert_eq!(out, b"<meta charset=\"iso-8859-1\"><h1>\xe9</h1>");
        // The header wins over the meta tag.
        let (out, _) = run(
            &[mutation("h1", SetText, "é")],
            None,
            "text/html;charset=utf-8",
            input,
            4,
        );
        assert_eq!(out, "<meta charset=\"iso-8859-1\"><h1>é</h1>".as_bytes());
    }

    #[test]
    fn charsets_that_are_not_ascii_compatible_are_refused() {
        for charset in ["utf-16", "UTF-16BE", "iso-2022-jp"] {
            let result = PageRewriter::new(
                &[mutation("h1", Remove, "")],
                None,
                Some(&format!("text/html; charset={charset}")),
                |_: &[u8]| {},
            );
            assert!(
                matches!(result, Err(RewriteError::UnsupportedCharset(ref l)) if l == charset),
                "{charset}"
            );
        }
        // An unknown label is ignored, as browsers do: UTF-8.
        let (out, _) = run(
            &[mutation("h1", SetText, "é")],
            None,
            "text/html; charset=klingon",
            b"<h1>x</h1>",
            64,
        );
        assert_eq!(out, "<h1>é</h1>".as_bytes());
    }

    #[test]
    fn other_content_types_pass_through_untouched() {
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><title id="t">x</title></svg>"#;
        let injection = PageInjection {
            beacon_src: "/b.js".to_owned(),
            decisions_json: "{}".to_owned(),
            nonce: None,
        };
        for content_type in [
            "image/svg+xml",
            "application/json",
            "text/css",
            "text/plain",
        ] {
            let mut out = Vec::new();
            let mut rewriter = PageRewriter::new(
                &[mutation("#t", SetText, "y")],
                Some(&injection),
                Some(content_type),
                |c| out.extend_from_slice(c),
            )
            .unwrap();
            assert!(!rewriter.is_rewriting());
            rewriter.write(svg).unwrap();
            let summary = rewriter.end().unwrap();
            assert!(!summary.injected);
            assert_eq!(summary.matches, vec![0]);
            assert_eq!(out, svg);
        }
    }

    #[test]
    fn invalid_selector_and_attribute_are_refused_with_their_index() {
        let bad_selector = [mutation("h1", Remove, ""), mutation("div[", Remove, "")];
        match PageRewriter::new(&bad_selector, None, Some("text/html"), |_: &[u8]| {}) {
            Err(RewriteError::InvalidSelector { mutation, reason }) => {
                assert_eq!(mutation, 1);
                assert!(reason.starts_with("invalid CSS selector"), "{reason}");
            }
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
        for name in ["", "a b", "on\"x", "x=y", "dåta"] {
            let bad = [attribute("h1", SetAttr, name, "v")];
            let result = PageRewriter::new(&bad, None, Some("text/html"), |_: &[u8]| {});
            assert!(
                matches!(
                    result,
                    Err(RewriteError::InvalidAttribute { mutation: 0, .. })
                ),
                "{name:?}"
            );
        }
    }

    fn injection(nonce: Option<&str>) -> PageInjection {
        PageInjection {
            beacon_src: "/_stellwerk/beacon.js?v=1&x=2".to_owned(),
            decisions_json: r#"{"t":["tok1"]}"#.to_owned(),
            nonce: nonce.map(str::to_owned),
        }
    }

    fn inject(input: &str, injection: &PageInjection) -> (String, RewriteSummary) {
        let (out, summary) = run(&[], Some(injection), "text/html", input.as_bytes(), 5);
        (String::from_utf8(out).unwrap(), summary)
    }

    const SNIPPET: &str = r#"<script>window.__stellwerk={"t":["tok1"]};</script><script src="/_stellwerk/beacon.js?v=1&amp;x=2" defer></script>"#;

    #[test]
    fn injection_goes_before_the_end_of_head() {
        let (out, summary) = inject(
            "<html><head><title>x</title></head><body><head></head></body></html>",
            &injection(None),
        );
        assert_eq!(
            out,
            format!(
                "<html><head><title>x</title>{SNIPPET}</head><body><head></head></body></html>"
            )
        );
        assert!(summary.injected);
    }

    #[test]
    fn injection_carries_the_nonce_on_both_scripts() {
        let (out, _) = inject("<head></head>", &injection(Some("r4nd\"om")));
        assert_eq!(
            out,
            r#"<head><script nonce="r4nd&quot;om">window.__stellwerk={"t":["tok1"]};</script><script src="/_stellwerk/beacon.js?v=1&amp;x=2" defer nonce="r4nd&quot;om"></script></head>"#
        );
    }

    #[test]
    fn injection_without_head_end_goes_before_body_then_at_the_end() {
        let (out, _) = inject("<head><title>x</title><body>hi</body>", &injection(None));
        assert_eq!(
            out,
            format!("<head><title>x</title>{SNIPPET}<body>hi</body>")
        );
        let (out, _) = inject("<!doctype html><p>bare</p>", &injection(None));
        assert_eq!(out, format!("<!doctype html><p>bare</p>{SNIPPET}"));
    }

    #[test]
    fn injected_json_cannot_close_the_script() {
        let decisions = "{\"arm\":\"</script><script>alert(1)</script>\",\"s\":\"\u{2028}é&\"}";
        let injection = PageInjection {
            decisions_json: decisions.to_owned(),
            ..injection(None)
        };
        let (out, _) = inject("<head></head>", &injection);
        let json = out
            .strip_prefix("<head><script>window.__stellwerk=")
            .and_then(|rest| rest.split_once(";</script>"))
            .map(|(json, _)| json)
            .expect("inline script");
        assert!(json.is_ascii());
        assert!(!json.contains(['<', '>', '&']));
        let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
        let original: serde_json::Value = serde_json::from_str(decisions).unwrap();
        assert_eq!(parsed, original);
    }

    #[test]
    fn injection_is_ascii_in_a_legacy_charset() {
        let injection = PageInjection {
            beacon_src: "/b.js?q=ü".to_owned(),
            decisions_json: "[\"ü😀\"]".to_owned(),
            nonce: None,
        };
        let (out, _) = run(
            &[],
            Some(&injection),
            "text/html; charset=windows-1252",
            b"<head></head>",
            3,
        );
        assert_eq!(
            out,
            br#"<head><script>window.__stellwerk=["\u00fc\ud83d\ude00"];</script><script src="/b.js?q=&#xfc;" defer></script></head>"#
        );
    }

    #[test]
    fn invalid_decisions_json_is_refused() {
        let injection = PageInjection {
            decisions_json: "{\"a\":1} </script>".to_owned(),
            ..injection(None)
        };
        let result = PageRewriter::new(&[], Some(&injection), Some("text/html"), |_: &[u8]| {});
        assert!(matches!(result, Err(RewriteError::InvalidDecisions(_))));
    }

    #[test]
    fn memory_limit_bails_out_and_passes_the_rest_through() {
        let mut input = b"<p id=t>old</p><div data-blob=\"".to_vec();
        input.resize(input.len() + MAX_REWRITER_MEMORY + 1024, b'A');
        input.extend_from_slice(b"\"><p id=t>later</p></div>");
        let (out, summary) = run(
            &[mutation("#t", SetText, "new")],
            None,
            "text/html",
            &input,
            64 << 10,
        );
        assert!(matches!(
            summary.bail_out,
            Some(RewriteError::MemoryLimit(_))
        ));
        let expected = [b"<p id=t>new</p>".as_slice(), &input[15..]].concat();
        assert_eq!(out.len(), expected.len());
        assert!(
            out == expected,
            "output differs from the input past the bail-out"
        );
        assert_eq!(summary.matches, vec![1]);
    }

    #[test]
    fn an_injection_only_page_is_not_parsed_past_the_snippet() {
        let page =
            "<html><head><title>t</title></head><body><div class=x><p>end</p></div></body></html>";
        let expected = page.replacen("</head>", &format!("{SNIPPET}</head>"), 1);
        // Chunk sizes around the slice lol_html is fed in, and ones that split `</head>`.
        for chunk in [1, 3, 33, 4096, page.len()] {
            let (out, summary) = run(
                &[],
                Some(&injection(None)),
                "text/html",
                page.as_bytes(),
                chunk,
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected, "chunk {chunk}");
            assert!(summary.injected, "chunk {chunk}");
        }
        // lol_html holds a tag that a chunk cuts short until it sees the rest; once the snippet
        // is in, nothing is held back any more.
        assert_eq!(
            released_before_end(&[], "<html><head></head><bo"),
            format!("<html><head>{SNIPPET}</head><bo")
        );
    }

    /// What the rewriter (with the injection) has released after one write, before `end`.
    fn released_before_end(mutations: &[Mutation], chunk: &str) -> String {
        let mut out = Vec::new();
        let mut rewriter = PageRewriter::new(
            mutations,
            Some(&injection(None)),
            Some("text/html"),
            |c: &[u8]| out.extend_from_slice(c),
        )
        .expect("valid rewrite");
        rewriter.write(chunk.as_bytes()).expect("write");
        drop(rewriter);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_page_with_mutations_holds_a_cut_tag_until_it_is_complete() {
        assert_eq!(
            released_before_end(
                &[mutation("div", AddClass, "y")],
                "<html><head></head><body><div cla"
            ),
            format!("<html><head>{SNIPPET}</head><body>")
        );
    }

    #[test]
    fn check_selector_reports_lol_html_reason() {
        assert_eq!(check_selector("#hero h1, a.cta[href^='/shop']"), Ok(()));
        let err = check_selector("div >").unwrap_err();
        assert!(err.starts_with("invalid CSS selector: "), "{err}");
        assert!(err.len() > "invalid CSS selector: ".len());
        assert!(check_selector("").is_err());
        assert!(check_selector("a:hover").is_err());
    }

    #[test]
    fn is_html_only_for_text_html() {
        assert!(is_html(Some("text/html")));
        assert!(is_html(Some(" Text/HTML ; charset=utf-8")));
        for other in [
            "image/svg+xml",
            "application/xhtml+xml",
            "application/json",
            "text/css",
            "text/htmlx",
            "",
        ] {
            assert!(!is_html(Some(other)), "{other}");
        }
        assert!(!is_html(None));
    }

    #[test]
    fn charset_of_reads_the_parameter() {
        assert_eq!(charset_of("text/html; charset=UTF-8"), Some("UTF-8"));
        assert_eq!(
            charset_of("text/html;foo=bar; Charset=\"windows-1252\""),
            Some("windows-1252")
        );
        assert_eq!(charset_of("text/html; charset="), None);
        assert_eq!(charset_of("text/html"), None);
        assert_eq!(charset_of("text/html; xcharset=utf-8"), None);
    }

    #[test]
    fn csp_nonce_prefers_script_src_then_default_src() {
        assert_eq!(
            csp_nonce(
                "default-src 'self' 'nonce-d3f'; script-src 'self' 'nonce-abc+/=' 'strict-dynamic'"
            ),
            Some("abc+/=".to_owned())
        );
        assert_eq!(
            csp_nonce("img-src *; default-src 'self' 'NONCE-d3f'"),
            Some("d3f".to_owned())
        );
        // A script-src without a nonce does not fall back to default-src's.
        assert_eq!(
            csp_nonce("default-src 'nonce-d3f'; script-src 'self'"),
            None
        );
        assert_eq!(csp_nonce("script-src 'nonce-'"), None);
        assert_eq!(csp_nonce(""), None);
        assert_eq!(
            csp_nonce("script-src 'nonce-first'; script-src 'nonce-second'"),
            Some("first".to_owned())
        );
    }

    /// Every action at once, with an injection: the widest rewrite the proptests exercise.
    fn every_action() -> Vec<Mutation> {
        vec![
            mutation("h1", SetText, "T & <t>"),
            mutation("p.x", SetHtml, "<b>h</b>"),
            attribute("a", SetAttr, "href", "/n?a=1&b=2"),
            attribute("img", RemoveAttr, "alt", ""),
            mutation("div", AddClass, "added"),
            mutation("[class]", RemoveClass, "x"),
            mutation("span", InsertBefore, "<i>b</i>"),
            mutation("span", InsertAfter, "<i>a</i>"),
            mutation("ul", Append, "<li>z</li>"),
            mutation("ul", Prepend, "<li>0</li>"),
            mutation("#gone", Remove, ""),
            mutation("section", Hide, ""),
        ]
    }

    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..24),
            prop::sample::select(vec![
                "<html>",
                "<head>",
                "</head>",
                "<body>",
                "</body>",
                "<h1>",
                "</h1>",
                "<p class=\"x y\">",
                "</p>",
                "<a href='/o'>",
                "</a>",
                "<img alt=\"a\">",
                "<div>",
                "</div>",
                "<span>",
                "</span>",
                "<ul>",
                "</ul>",
                "<li>",
                "<section style=\"color:red\">",
                "</section>",
                "<div id=\"gone\">",
                "<!-- c -->",
                "<script>if(a<b)x()</script>",
                "<style>p>a{}</style>",
                "<br/>",
                "<svg><title>t</title></svg>",
                "&amp;",
                "<textarea>",
                "<meta charset=\"windows-1252\">",
                "<!doctype html>",
                "<",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
        ]
    }

    fn page() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(fragment(), 0..40).prop_map(|parts| parts.concat())
    }

    fn chunked(
        mutations: &[Mutation],
        injection: Option<&PageInjection>,
        content_type: &str,
        input: &[u8],
        cuts: &[usize],
    ) -> Result<(Vec<u8>, RewriteSummary), RewriteError> {
        let mut out = Vec::new();
        let mut rewriter = PageRewriter::new(mutations, injection, Some(content_type), |c| {
            out.extend_from_slice(c)
        })?;
        let mut rest = input;
        for &cut in cuts {
            let (head, tail) = rest.split_at(cut.min(rest.len()));
            rewriter.write(head)?;
            rest = tail;
        }
        rewriter.write(rest)?;
        let summary = rewriter.end()?;
        Ok((out, summary))
    }

    const CHARSETS: [&str; 4] = [
        "text/html",
        "text/html; charset=utf-8",
        "text/html; charset=windows-1252",
        "text/html; charset=shift_jis",
    ];

    proptest! {
        #[test]
        fn output_does_not_depend_on_chunk_boundaries(
            input in page(),
            cuts in prop::collection::vec(0usize..64, 0..16),
            charset in prop::sample::select(CHARSETS.to_vec()),
        ) {
            let injection = injection(Some("n"));
            let whole = chunked(&every_action(), Some(&injection), charset, &input, &[]);
            let split = chunked(&every_action(), Some(&injection), charset, &input, &cuts);
            prop_assert_eq!(whole, split);
        }

        #[test]
        fn stopping_after_the_injection_changes_no_byte(
            (head, body) in (page(), page()),
            // Text between the two, so the snippet's place may lie beyond the first slices.
            filler in 0usize..12_000,
            cuts in prop::collection::vec(0usize..3000, 0..16),
            charset in prop::sample::select(CHARSETS.to_vec()),
        ) {
            let input = [head, b"t".repeat(filler), body].concat();
            // A selector that matches nothing keeps lol_html parsing to the end of the page.
            let injection = injection(Some("n"));
            let never = [mutation("#never-on-the-page", SetText, "x")];
            let parsed = chunked(&never, Some(&injection), charset, &input, &[]);
            let early = chunked(&[], Some(&injection), charset, &input, &cuts);
            prop_assert_eq!(early.map(|(out, _)| out), parsed.map(|(out, _)| out));
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(
            input in prop::collection::vec(any::<u8>(), 0..2048),
            cuts in prop::collection::vec(0usize..512, 0..8),
            charset in prop::sample::select(CHARSETS.to_vec()),
        ) {
            let injection = injection(None);
            let result = chunked(&every_action(), Some(&injection), charset, &input, &cuts);
            prop_assert!(result.is_ok());
        }

        #[test]
        fn a_rewriter_with_nothing_to_do_is_the_identity(
            input in prop_oneof![page(), prop::collection::vec(any::<u8>(), 0..2048)],
            cuts in prop::collection::vec(0usize..64, 0..8),
            charset in prop::sample::select(CHARSETS.to_vec()),
        ) {
            let (out, _) = chunked(&[], None, charset, &input, &cuts).unwrap();
            prop_assert_eq!(&out, &input);
            // Through lol_html too: a selector that matches nothing changes nothing.
            let never = [mutation("#never-on-the-page", SetText, "x")];
            let (out, summary) = chunked(&never, None, charset, &input, &cuts).unwrap();
            prop_assert_eq!(summary.matches, vec![0]);
            prop_assert_eq!(out, input);
        }

        #[test]
        fn bytes_outside_the_targeted_element_are_unchanged(
            before in prop::collection::vec(untargeted(), 0..12),
            after in prop::collection::vec(untargeted(), 0..12),
            cuts in prop::collection::vec(0usize..64, 0..8),
        ) {
            let (before, after) = (before.concat(), after.concat());
            let input = [&before[..], b"<p id=\"t\" class=\"c\">old <b>x</b></p>", &after[..]].concat();
            let mutations = [
                mutation("#t", SetText, "new"),
                mutation("#t", AddClass, "d"),
                mutation("#t", InsertAfter, "<hr>"),
            ];
            let (out, summary) = chunked(&mutations, None, "text/html", &input, &cuts).unwrap();
            let expected = [&before[..], b"<p id=\"t\" class=\"c d\">new</p><hr>", &after[..]].concat();
            prop_assert_eq!(summary.matches, vec![1, 1, 1]);
            prop_assert_eq!(out, expected);
        }
    }

    /// Closed markup that cannot contain `#t` and leaves the parser in its data state.
    fn untargeted() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>().prop_filter("no tags", |b| *b != b'<'), 0..32),
            prop::sample::select(vec![
                "<div class=\"a\">",
                "</div>",
                "<p id=\"u\">",
                "</p>",
                "<!-- <p id=t> -->",
                "<br>",
                "<img src=\"t.png\">",
                "<script>var t='<p id=t>'</script>",
                "<em>",
                "</em>",
                "&lt;",
                "<a href=\"#t\">t</a>",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
        ]
    }
}
