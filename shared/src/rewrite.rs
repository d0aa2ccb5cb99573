//! Streaming HTML rewriting with lol_html: chunk in, chunk out, never the whole page.
//!
//! A [`PageRewriter`] applies a variant's [`Mutation`]s to the origin's HTML and injects the
//! beacon snippet while the page streams through it. Bytes that no mutation targets leave it
//! exactly as they came in, whatever their encoding or validity.
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

use crate::snapshot::{Mutation, MutationAction};

/// Upper bound, in bytes, on the memory one page's lol_html buffers may take before the
/// rewriter bails out and passes the rest of the page through.
pub const MAX_REWRITER_MEMORY: usize = 4 << 20;

/// Parsing buffer allocated up front; a start tag longer than this that straddles two chunks
/// makes lol_html grow it (up to [`MAX_REWRITER_MEMORY`]).
const PREALLOCATED_PARSING_BUFFER: usize = 4 << 10;

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
                write!(f, "charset {label:?} is not ASCII-compatible and cannot be rewritten")
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
pub struct PageRewriter<O: FnMut(&[u8])> {
    sink: Rc<RefCell<O>>,
    state: State<O>,
    matches: Rc<[Cell<u32>]>,
    injected: Rc<Cell<bool>>,
    bail_out: Option<RewriteError>,
}

enum State<O: FnMut(&[u8])> {
    Rewriting(Box<HtmlRewriter<'static, SharedSink<O>>>),
    PassThrough,
    Failed,
}

/// Lets lol_html and the rewriter share one output, so the rewriter can keep writing to it
/// after lol_html bails out.
struct SharedSink<O>(Rc<RefCell<O>>);

impl<O: FnMut(&[u8])> OutputSink for SharedSink<O> {
    fn handle_chunk(&mut self, chunk: &[u8]) {
        // The only other borrower is PageRewriter itself, never while lol_html is running.
        (self.0.borrow_mut())(chunk);
    }
}

impl<O: FnMut(&[u8])> PageRewriter<O> {
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
        output: O,
    ) -> Result<Self, RewriteError> {
        let sink = Rc::new(RefCell::new(output));
        let matches: Rc<[Cell<u32>]> = mutations.iter().map(|_| Cell::new(0)).collect();
        let injected = Rc::new(Cell::new(false));
        let mut rewriter = PageRewriter {
            sink,
            state: State::PassThrough,
            matches,
            injected,
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
            let edit = Edit::from_mutation(mutation).map_err(|reason| {
                RewriteError::InvalidAttribute {
                    mutation: index,
                    reason,
                }
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
        let result = match &mut self.state {
            State::Rewriting(lol) => lol.write(chunk),
            State::PassThrough => {
                (self.sink.borrow_mut())(chunk);
                return Ok(());
            }
            State::Failed => return Err(RewriteError::AfterFailure),
        };
        result.or_else(|error| self.stop(error))
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
