//! OpenFeature flagd flag definitions: parsing, validation and evaluation.
//!
//! A flagd document is validated once ([`FlagSet::parse`]): `$evaluators` are substituted for
//! every `{"$ref": name}` and each flag's targeting is checked, so evaluation never re-parses.
//! Evaluation follows flagd and its published conformance suite (flagd-testbed): the context
//! gains `$flagd.flagKey` and `$flagd.timestamp`, and targeting yields a variant name, or null
//! for the default variant. Where flagd hands the caller's own default value back (disabled
//! flag, no default variant, any error), [`FlagResolution::value`] is `null` and
//! [`FlagResolution::variant`] is `None`: the caller substitutes its default.
//!
//! Custom operations, as flagd defines them:
//! - `fractional`: MurmurHash3 x86_32 (seed 0) of the bucketing key (the first argument when it
//!   evaluates to a string, else `$flagd.flagKey + targetingKey`), mapped onto the summed integer
//!   weights as `(hash * total_weight) >> 32`; `[variant]` weighs 1, negative weights count 0.
//! - `sem_ver`: `=`, `!=`, `<`, `<=`, `>`, `>=`, `^` (same major), `~` (same major and minor),
//!   with `v`/`V` prefixes and build metadata ignored and partial versions padded.
//! - `starts_with`, `ends_with`.
//!
//! A custom operation given arguments it cannot use aborts the whole targeting rule, which then
//! resolves to the default variant (flagd-testbed's `@operator-errors` scenarios), instead of
//! yielding `false` and picking a `"false"` variant.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::jsonlogic::{self, CustomOperation, LogicError};
use crate::validate::{Invalid, Issues, field, index};

/// A parsed flagd document (`{"flags": {...}, "$evaluators": {...}}`).
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    keys: Vec<String>,
    flags: Vec<Flag>,
}

/// One validated flag with its targeting resolved and checked.
#[derive(Debug, Clone)]
struct Flag {
    enabled: bool,
    variants: Map<String, Value>,
    default_variant: Option<String>,
    /// `None` when the flag has no targeting or `{}` (flagd's STATIC case).
    targeting: Option<Arc<Value>>,
}

impl FlagSet {
    /// Validates a flagd document; refuses it with every problem as `path: reason`
    /// (paths relative to the flagd document, e.g. `flags.new-banner.defaultVariant`).
    pub fn parse(document: &Value) -> Result<FlagSet, Invalid> {
        let mut issues = Issues::new();
        let Some(root) = document.as_object() else {
            issues.push("", "a flagd document must be a JSON object");
            return issues.finish(FlagSet::default());
        };
        let evaluators = match root.get("$evaluators") {
            None => Map::new(),
            Some(Value::Object(map)) => {
                for (name, body) in map {
                    if !body.is_object() {
                        issues.push(
                            field("$evaluators", name),
                            "an evaluator must be a JsonLogic object",
                        );
                    }
                }
                map.clone()
            }
            Some(_) => {
                issues.push("$evaluators", "must be an object of named JsonLogic rules");
                Map::new()
            }
        };
        if let Some(metadata) = root.get("metadata") {
            check_metadata(metadata, "metadata", &mut issues);
        }
        let mut set = FlagSet::default();
        match root.get("flags") {
            Some(Value::Object(flags)) => {
                for (key, definition) in flags {
                    let path = field("flags", key);
                    if let Some(flag) = parse_flag(definition, &path, &evaluators, &mut issues) {
                        set.keys.push(key.clone());
                        set.flags.push(flag);
                    }
                }
            }
            Some(_) => issues.push("flags", "must be an object mapping flag keys to flags"),
            None => issues.push("flags", "is required"),
        }
        issues.finish(set)
    }

    /// Whether the document defines a flag with this key.
    pub fn contains(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// Flag keys in the order `serde_json` keeps them: sorted, or document order with `preserve_order`.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    fn flag(&self, key: &str) -> Option<&Flag> {
        let position = self.keys.iter().position(|k| k == key)?;
        self.flags.get(position)
    }

    /// Evaluates one flag for a context, as flagd does. `now_unix_seconds` feeds `$flagd.timestamp`.
    pub fn evaluate(&self, key: &str, context: &Value, now_unix_seconds: u64) -> FlagResolution {
        let Some(flag) = self.flag(key) else {
            return FlagResolution::error(key, ErrorCode::FlagNotFound);
        };
        if !flag.enabled {
            return FlagResolution {
                key: key.to_owned(),
                value: Value::Null,
                variant: None,
                reason: Reason::Disabled,
                error_code: None,
            };
        }
        let Some(targeting) = &flag.targeting else {
            return flag.default_resolution(key, Reason::Static);
        };
        let data = flagd_context(context, key, now_unix_seconds);
        match run(targeting, &data) {
            Outcome::Value(Value::Null) | Outcome::OperatorFailed => {
                flag.default_resolution(key, Reason::Default)
            }
            Outcome::Value(result) => {
                let name = match result {
                    Value::String(s) => s,
                    // flagd reads the rule's JSON output as the variant name: true → "true".
                    Value::Bool(_) | Value::Number(_) => result.to_string(),
                    Value::Null | Value::Array(_) | Value::Object(_) => {
                        return FlagResolution::error(key, ErrorCode::General);
                    }
                };
                match flag.variants.get(&name) {
                    Some(value) => FlagResolution {
                        key: key.to_owned(),
                        value: value.clone(),
                        variant: Some(name),
                        reason: Reason::TargetingMatch,
                        error_code: None,
                    },
                    None => FlagResolution::error(key, ErrorCode::General),
                }
            }
            Outcome::Failed(_) => FlagResolution::error(key, ErrorCode::ParseError),
        }
    }

    /// Evaluates one flag as a typed OpenFeature accessor does: a value of another type than
    /// `expected` resolves to `ERROR` / `TYPE_MISMATCH` (the caller's default applies).
    pub fn evaluate_as(
        &self,
        key: &str,
        context: &Value,
        now_unix_seconds: u64,
        expected: ValueType,
    ) -> FlagResolution {
        let mut resolution = self.evaluate(key, context, now_unix_seconds);
        if resolution.error_code.is_some() || resolution.variant.is_none() {
            return resolution;
        }
        match expected.accept(&resolution.value) {
            Some(value) => {
                resolution.value = value;
                resolution
            }
            None => FlagResolution::error(key, ErrorCode::TypeMismatch),
        }
    }
}

impl Flag {
    fn default_resolution(&self, key: &str, reason: Reason) -> FlagResolution {
        let found = self
            .default_variant
            .as_ref()
            .and_then(|name| self.variants.get(name).map(|value| (name, value)));
        match found {
            Some((name, value)) => FlagResolution {
                key: key.to_owned(),
                value: value.clone(),
                variant: Some(name.clone()),
                reason,
                error_code: None,
            },
            // No default variant: flagd answers DEFAULT and the caller's own default applies.
            None => FlagResolution {
                key: key.to_owned(),
                value: Value::Null,
                variant: None,
                reason: Reason::Default,
                error_code: None,
            },
        }
    }
}

/// The value type an OpenFeature typed accessor asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Boolean,
    String,
    Integer,
    Float,
    Object,
}

impl ValueType {
    /// The value as this type, or `None` on a mismatch. Numbers convert only without loss.
    fn accept(self, value: &Value) -> Option<Value> {
        match (self, value) {
            (ValueType::Boolean, Value::Bool(_))
            | (ValueType::String, Value::String(_))
            | (ValueType::Object, Value::Object(_)) => Some(value.clone()),
            (ValueType::Integer, Value::Number(n)) => {
                if n.is_i64() || n.is_u64() {
                    return Some(value.clone());
                }
                let f = n.as_f64()?;
                // Only integral floats within f64's exact-integer range narrow without loss.
                let exact = f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_991.0;
                exact.then(|| Value::from(f as i64))
            }
            (ValueType::Float, Value::Number(n)) => {
                if n.is_f64() {
                    Some(value.clone())
                } else {
                    n.as_f64()
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                }
            }
            _ => None,
        }
    }
}

/// OpenFeature's resolution details, serialised as `{"key","value","variant","reason","errorCode"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagResolution {
    pub key: String,
    /// The variant's value; `null` where the caller's default value applies.
    pub value: Value,
    pub variant: Option<String>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
}

impl FlagResolution {
    fn error(key: &str, code: ErrorCode) -> FlagResolution {
        FlagResolution {
            key: key.to_owned(),
            value: Value::Null,
            variant: None,
            reason: Reason::Error,
            error_code: Some(code),
        }
    }
}

/// Why a flag resolved as it did (OpenFeature resolution reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// No targeting: the default variant.
    Static,
    /// Targeting named a variant (flagd reports `fractional` splits this way too).
    TargetingMatch,
    /// Pseudorandom assignment; flagd never reports it, so evaluation does not either.
    Split,
    /// Targeting returned null (or a custom operation failed): the default variant.
    Default,
    /// The flag's state is DISABLED.
    Disabled,
    /// See the error code.
    Error,
}

/// OpenFeature error codes flagd evaluation can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FlagNotFound,
    ParseError,
    TypeMismatch,
    General,
}

/// Checks that a JsonLogic rule (with flagd's custom operations) is well-formed.
pub fn check_rule(rule: &Value) -> Result<(), String> {
    let mut issues = Issues::new();
    check_operators(rule, "", &mut issues);
    first_issue(issues).map_or(Ok(()), Err)
}

/// Evaluates a JsonLogic rule (with flagd's custom operations) against a context.
/// `flag_key` is what `$flagd.flagKey` and `fractional`'s default bucketing key use.
/// A custom operation that cannot use its arguments makes the rule yield `null`, as it makes
/// flag targeting fall back to the default variant.
pub fn evaluate_rule(
    rule: &Value,
    context: &Value,
    flag_key: &str,
    now_unix_seconds: u64,
) -> Result<Value, String> {
    check_rule(rule)?;
    let data = flagd_context(context, flag_key, now_unix_seconds);
    match run(rule, &data) {
        Outcome::Value(value) => Ok(value),
        Outcome::OperatorFailed => Ok(Value::Null),
        Outcome::Failed(reason) => Err(reason),
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing

const FLAG_FIELDS: [&str; 5] = [
    "state",
    "variants",
    "defaultVariant",
    "targeting",
    "metadata",
];

fn parse_flag(
    definition: &Value,
    path: &str,
    evaluators: &Map<String, Value>,
    issues: &mut Issues,
) -> Option<Flag> {
    let Some(object) = definition.as_object() else {
        issues.push(path, "a flag must be an object");
        return None;
    };
    let outer = issues;
    let issues = &mut Issues::new();
    for name in object.keys() {
        if !FLAG_FIELDS.contains(&name.as_str()) {
            issues.push(
                field(path, name),
                "unknown field (a flag has state, variants, defaultVariant, targeting, metadata)",
            );
        }
    }
    let enabled = match object.get("state") {
        Some(Value::String(s)) if s == "ENABLED" => true,
        Some(Value::String(s)) if s == "DISABLED" => false,
        Some(_) => {
            issues.push(field(path, "state"), "must be \"ENABLED\" or \"DISABLED\"");
            false
        }
        None => {
            issues.push(field(path, "state"), "is required");
            false
        }
    };
    let variants = match object.get("variants") {
        Some(Value::Object(map)) if !map.is_empty() => {
            check_variant_types(map, &field(path, "variants"), issues);
            map.clone()
        }
        Some(Value::Object(_)) => {
            issues.push(field(path, "variants"), "must name at least one variant");
            Map::new()
        }
        Some(_) => {
            issues.push(
                field(path, "variants"),
                "must be an object of variant values",
            );
            Map::new()
        }
        None => {
            issues.push(field(path, "variants"), "is required");
            Map::new()
        }
    };
    let default_variant = match object.get("defaultVariant") {
        None | Some(Value::Null) => None,
        Some(Value::String(name)) => {
            if !variants.is_empty() && !variants.contains_key(name) {
                issues.push(
                    field(path, "defaultVariant"),
                    format!("\"{name}\" is not one of the flag's variants"),
                );
            }
            Some(name.clone())
        }
        Some(_) => {
            issues.push(
                field(path, "defaultVariant"),
                "must be a variant name or null",
            );
            None
        }
    };
    if let Some(metadata) = object.get("metadata") {
        check_metadata(metadata, &field(path, "metadata"), issues);
    }
    let targeting = match object.get("targeting") {
        None => None,
        Some(Value::Object(rule)) if rule.is_empty() => None,
        Some(rule @ Value::Object(_)) => {
            resolve_targeting(rule, &field(path, "targeting"), evaluators, issues)
        }
        Some(_) => {
            issues.push(field(path, "targeting"), "must be a JsonLogic object");
            None
        }
    };
    let clean = absorb(outer, std::mem::take(issues));
    clean.then_some(Flag {
        enabled,
        variants,
        default_variant,
        targeting,
    })
}

/// Moves `local` into `issues`; true when `local` held none.
fn absorb(issues: &mut Issues, local: Issues) -> bool {
    match local.finish(()) {
        Ok(()) => true,
        Err(invalid) => {
            issues.extend(invalid.0);
            false
        }
    }
}

fn resolve_targeting(
    rule: &Value,
    path: &str,
    evaluators: &Map<String, Value>,
    issues: &mut Issues,
) -> Option<Arc<Value>> {
    let mut stack = Vec::new();
    let resolved = substitute_refs(rule, path, evaluators, &mut stack, issues)?;
    let mut unknown = Issues::new();
    check_operators(&resolved, path, &mut unknown);
    if !absorb(issues, unknown) {
        return None;
    }
    Some(Arc::new(resolved))
}

/// Replaces every `{"$ref": name}` with the named evaluator, as flagd does (the `$ref` pair gives
/// way to the evaluator's own fields). `stack` holds the evaluators being expanded, for cycles.
fn substitute_refs(
    rule: &Value,
    path: &str,
    evaluators: &Map<String, Value>,
    stack: &mut Vec<String>,
    issues: &mut Issues,
) -> Option<Value> {
    match rule {
        Value::Object(object) => {
            let mut out = Map::new();
            let mut ok = true;
            if let Some(reference) = object.get("$ref") {
                let ref_path = field(path, "$ref");
                match reference.as_str() {
                    Some(name) if stack.iter().any(|s| s == name) => {
                        issues.push(ref_path, format!("$ref cycle through evaluator \"{name}\""));
                        ok = false;
                    }
                    Some(name) => match evaluators.get(name).and_then(Value::as_object) {
                        Some(body) => {
                            stack.push(name.to_owned());
                            let expanded = substitute_refs(
                                &Value::Object(body.clone()),
                                &field("$evaluators", name),
                                evaluators,
                                stack,
                                issues,
                            );
                            stack.pop();
                            match expanded {
                                Some(Value::Object(fields)) => out.extend(fields),
                                _ => ok = false,
                            }
                        }
                        None => {
                            issues.push(ref_path, format!("no evaluator named \"{name}\""));
                            ok = false;
                        }
                    },
                    None => {
                        issues.push(ref_path, "must name an evaluator");
                        ok = false;
                    }
                }
            }
            for (key, value) in object {
                if key == "$ref" {
                    continue;
                }
                match substitute_refs(value, &field(path, key), evaluators, stack, issues) {
                    Some(v) => {
                        out.insert(key.clone(), v);
                    }
                    None => ok = false,
                }
            }
            ok.then_some(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                match substitute_refs(item, &index(path, i), evaluators, stack, issues) {
                    Some(v) => out.push(v),
                    None => ok = false,
                }
            }
            ok.then_some(Value::Array(out))
        }
        other => Some(other.clone()),
    }
}

/// Operators JsonLogic knows (the set flagd's JsonLogic evaluates) plus flagd's own.
const KNOWN_OPERATORS: [&str; 40] = [
    "var",
    "missing",
    "missing_some",
    "if",
    "?:",
    "==",
    "===",
    "!=",
    "!==",
    "!",
    "!!",
    "or",
    "and",
    ">",
    ">=",
    "<",
    "<=",
    "max",
    "min",
    "+",
    "-",
    "*",
    "/",
    "%",
    "map",
    "filter",
    "reduce",
    "all",
    "none",
    "some",
    "merge",
    "in",
    "cat",
    "substr",
    "log",
    "val",
    FRACTIONAL,
    SEM_VER,
    STARTS_WITH,
    ENDS_WITH,
];

/// Refuses operators flagd does not know. JsonLogic engines differ on unknown single-key
/// objects (some read them as data); flagd answers PARSE_ERROR for them, so they never load.
fn check_operators(rule: &Value, path: &str, issues: &mut Issues) {
    match rule {
        Value::Object(object) => {
            if object.len() == 1
                && let Some((name, args)) = object.iter().next()
            {
                if !KNOWN_OPERATORS.contains(&name.as_str()) {
                    issues.push(field(path, name), format!("unknown operator \"{name}\""));
                }
                check_operators(args, &field(path, name), issues);
            } else {
                issues.push(
                    path,
                    "a JsonLogic operation must have exactly one operator key",
                );
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_operators(item, &index(path, i), issues);
            }
        }
        _ => {}
    }
}

/// flagd's schema types a flag by its variants: all booleans, strings, numbers or objects.
fn check_variant_types(variants: &Map<String, Value>, path: &str, issues: &mut Issues) {
    let mut kinds = BTreeSet::new();
    for (name, value) in variants {
        let kind = match value {
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Object(_) => "object",
            Value::Null | Value::Array(_) => {
                issues.push(
                    field(path, name),
                    "a variant value must be a boolean, string, number or object",
                );
                continue;
            }
        };
        kinds.insert(kind);
    }
    if kinds.len() > 1 {
        let kinds: Vec<&str> = kinds.into_iter().collect();
        issues.push(
            path,
            format!(
                "variants must all be of one type, found {}",
                kinds.join(" and ")
            ),
        );
    }
}

fn check_metadata(metadata: &Value, path: &str, issues: &mut Issues) {
    let Some(object) = metadata.as_object() else {
        issues.push(path, "must be an object");
        return;
    };
    for (name, value) in object {
        if !matches!(value, Value::Bool(_) | Value::String(_) | Value::Number(_)) {
            issues.push(
                field(path, name),
                "metadata values must be booleans, strings or numbers",
            );
        }
    }
}

fn first_issue(issues: Issues) -> Option<String> {
    issues
        .finish(())
        .err()
        .and_then(|invalid| invalid.0.into_iter().next())
        .map(|issue| issue.to_string())
}

// ---------------------------------------------------------------------------------------------
// Evaluation

const FRACTIONAL: &str = "fractional";
const SEM_VER: &str = "sem_ver";
const STARTS_WITH: &str = "starts_with";
const ENDS_WITH: &str = "ends_with";

/// flagd's custom operations, by name.
fn custom_operation(name: &str) -> Option<CustomOperation> {
    match name {
        FRACTIONAL => Some(fractional),
        SEM_VER => Some(sem_ver),
        STARTS_WITH => Some(|args, _| affix(args, |text, affix| text.starts_with(affix))),
        ENDS_WITH => Some(|args, _| affix(args, |text, affix| text.ends_with(affix))),
        _ => None,
    }
}

/// The evaluation context as flagd builds it: the caller's, with `$flagd` set (overwritten).
fn flagd_context(context: &Value, flag_key: &str, now_unix_seconds: u64) -> Value {
    let mut data = context.as_object().cloned().unwrap_or_default();
    let mut flagd = Map::new();
    flagd.insert("flagKey".to_owned(), Value::from(flag_key));
    flagd.insert("timestamp".to_owned(), Value::from(now_unix_seconds));
    data.insert("$flagd".to_owned(), Value::Object(flagd));
    Value::Object(data)
}

enum Outcome {
    Value(Value),
    /// A custom operation refused its arguments: the rule resolves to the default variant.
    OperatorFailed,
    /// The JsonLogic evaluation failed.
    Failed(String),
}

fn run(rule: &Value, data: &Value) -> Outcome {
    match jsonlogic::evaluate(rule, data, custom_operation) {
        Ok(result) => Outcome::Value(result),
        Err(LogicError::Refused(_)) => Outcome::OperatorFailed,
        Err(LogicError::Failed(reason)) => Outcome::Failed(reason),
    }
}

fn refuse<T>(reason: impl Into<String>) -> Result<T, LogicError> {
    Err(LogicError::Refused(reason.into()))
}

/// flagd's `fractional` operation.
fn fractional(args: &[Value], root: &Value) -> Result<Value, LogicError> {
    let Some(first) = args.first() else {
        return refuse("fractional needs at least one bucket");
    };
    let (key, buckets) = match first {
        Value::String(s) => (s.clone(), &args[1..]),
        // No bucketing expression: every argument is a bucket, keyed by flag and visitor.
        Value::Array(_) => {
            let flag_key = root
                .pointer("/$flagd/flagKey")
                .and_then(Value::as_str)
                .unwrap_or("");
            let targeting_key = root
                .get("targetingKey")
                .and_then(Value::as_str)
                .unwrap_or("");
            (format!("{flag_key}{targeting_key}"), args)
        }
        _ => return refuse("fractional's bucketing key is not a string"),
    };
    let mut weighted = Vec::with_capacity(buckets.len());
    for bucket in buckets {
        let Some(parts) = bucket.as_array() else {
            return refuse("a fractional bucket must be [variant, weight]");
        };
        let Some(variant) = parts.first() else {
            return refuse("a fractional bucket needs a variant");
        };
        if matches!(variant, Value::Array(_) | Value::Object(_)) {
            return refuse("a fractional variant must be a string, boolean or number");
        }
        let weight = match parts.get(1) {
            None => 1,
            Some(w) => match w.as_f64() {
                Some(w) if w.is_finite() => w.max(0.0) as u64,
                _ => return refuse("a fractional weight must be a number"),
            },
        };
        weighted.push((variant, weight));
    }
    let weights: Vec<u64> = weighted.iter().map(|(_, w)| *w).collect();
    match fractional_bucket(&key, &weights) {
        Some(i) => match weighted.get(i) {
            Some((variant, _)) => Ok((*variant).clone()),
            None => refuse("fractional found no bucket"),
        },
        None => refuse("fractional weights must sum to between 1 and 2147483647"),
    }
}

/// The bucket `key` falls in, as flagd computes it: MurmurHash3 x86_32 (seed 0) of the key,
/// scaled onto `[0, total)` by `(hash * total) >> 32`, then the first bucket whose cumulative
/// weight exceeds that point. `None` when the weights sum to 0 or exceed `i32::MAX`.
pub fn fractional_bucket(key: &str, weights: &[u64]) -> Option<usize> {
    let total = weights
        .iter()
        .try_fold(0u64, |sum, w| sum.checked_add(*w))?;
    if total == 0 || total > i32::MAX as u64 {
        return None;
    }
    let hash = u64::from(mur3::murmurhash3_x86_32(key.as_bytes(), 0));
    let point = (hash * total) >> 32;
    let mut end = 0u64;
    weights.iter().position(|w| {
        end += w;
        point < end
    })
}

/// flagd's `sem_ver` operation.
fn sem_ver(args: &[Value], _root: &Value) -> Result<Value, LogicError> {
    let [left, operator, right] = args else {
        return refuse("sem_ver takes [version, operator, version]");
    };
    let Some(operator) = operator.as_str() else {
        return refuse("sem_ver's operator must be a string");
    };
    let (Some(left), Some(right)) = (parse_version(left), parse_version(right)) else {
        return refuse("sem_ver needs two semantic versions");
    };
    match compare_versions(&left, operator, &right) {
        Some(result) => Ok(Value::Bool(result)),
        None => refuse(format!("unknown sem_ver operator \"{operator}\"")),
    }
}

fn compare_versions(
    left: &semver::Version,
    operator: &str,
    right: &semver::Version,
) -> Option<bool> {
    Some(match operator {
        "=" => left == right,
        "!=" => left != right,
        "<" => left < right,
        "<=" => left <= right,
        ">" => left > right,
        ">=" => left >= right,
        "^" => left.major == right.major,
        "~" => left.major == right.major && left.minor == right.minor,
        _ => return None,
    })
}

/// A version as flagd reads it: `v`/`V` prefix and build metadata dropped, `1` and `1.2`
/// padded to `1.0.0` and `1.2.0`, numbers read as their decimal text.
fn parse_version(value: &Value) -> Option<semver::Version> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.to_string(),
            None => n.as_f64()?.to_string(),
        },
        _ => return None,
    };
    let text = text.strip_prefix(['v', 'V']).unwrap_or(&text);
    let text = text.split_once('+').map_or(text, |(core, _)| core);
    let (core, pre_release) = match text.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (text, None),
    };
    let padding = match core.matches('.').count() {
        0 => ".0.0",
        1 => ".0",
        _ => "",
    };
    let mut normalised = format!("{core}{padding}");
    if let Some(pre) = pre_release {
        normalised.push('-');
        normalised.push_str(pre);
    }
    semver::Version::parse(&normalised).ok()
}

/// flagd's `starts_with` and `ends_with` operations.
fn affix(args: &[Value], test: fn(&str, &str) -> bool) -> Result<Value, LogicError> {
    let [Value::String(text), Value::String(affix)] = args else {
        return refuse("starts_with and ends_with take two strings");
    };
    Ok(Value::Bool(test(text, affix)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonlogic::is_truthy;
    use proptest::prelude::*;
    use serde_json::json;

    fn set(flags: Value) -> FlagSet {
        match FlagSet::parse(&flags) {
            Ok(set) => set,
            Err(invalid) => panic!("document refused: {invalid}"),
        }
    }

    fn issues(document: Value) -> Vec<String> {
        match FlagSet::parse(&document) {
            Ok(_) => Vec::new(),
            Err(invalid) => invalid.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn murmur3_matches_reference_vectors() {
        // SMHasher reference values for MurmurHash3_x86_32, seed 0.
        assert_eq!(mur3::murmurhash3_x86_32(b"", 0), 0);
        assert_eq!(mur3::murmurhash3_x86_32(b"hello", 0), 0x248b_fa47);
        assert_eq!(mur3::murmurhash3_x86_32(b"hello, world", 0), 0x149b_bb7f);
    }

    #[test]
    fn every_known_operator_is_evaluated() {
        for name in KNOWN_OPERATORS {
            let rule = json!({ name: [] });
            if let Outcome::Failed(reason) = run(&rule, &json!({})) {
                assert!(!reason.contains("unknown operator"), "{name}: {reason}");
            }
        }
        assert!(matches!(
            run(&json!({"nope": []}), &json!({})),
            Outcome::Failed(_)
        ));
    }

    #[test]
    fn parse_collects_every_issue_with_paths() {
        let found = issues(json!({
            "flags": {
                "a": {"state": "ON", "variants": {}, "defaultVariant": "x"},
                "b": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "off",
                      "targeting": {"if": [{"$ref": "nope"}, "on", null]}},
                "c": {"state": "ENABLED", "variants": {"on": true, "s": "x"}, "defaultVariant": "on",
                      "targetting": {}},
                "d": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on",
                      "targeting": {"invalid": [1]}}
            }
        }));
        let expected = [
            "flags.a.state: must be \"ENABLED\" or \"DISABLED\"",
            "flags.a.variants: must name at least one variant",
            "flags.b.defaultVariant: \"off\" is not one of the flag's variants",
            "flags.b.targeting.if[0].$ref: no evaluator named \"nope\"",
            "flags.c.targetting: unknown field (a flag has state, variants, defaultVariant, targeting, metadata)",
            "flags.c.variants: variants must all be of one type, found boolean and string",
            "flags.d.targeting.invalid: unknown operator \"invalid\"",
        ];
        for line in expected {
            assert!(
                found.iter().any(|f| f == line),
                "missing `{line}` in {found:#?}"
            );
        }
        assert_eq!(found.len(), expected.len(), "{found:#?}");
    }

    #[test]
    fn refs_expand_recursively_and_cycles_are_refused() {
        let flags = set(json!({
            "flags": {"f": {"state": "ENABLED", "variants": {"y": 1, "n": 0}, "defaultVariant": "n",
                            "targeting": {"if": [{"$ref": "outer"}, "y", "n"]}}},
            "$evaluators": {
                "outer": {"and": [{"$ref": "inner"}, true]},
                "inner": {"==": [{"var": "tier"}, "gold"]}
            }
        }));
        let gold = flags.evaluate("f", &json!({"tier": "gold"}), 0);
        assert_eq!(gold.variant.as_deref(), Some("y"));
        let lead = flags.evaluate("f", &json!({"tier": "lead"}), 0);
        assert_eq!(lead.variant.as_deref(), Some("n"));

        let cyclic = issues(json!({
            "flags": {"f": {"state": "ENABLED", "variants": {"y": 1}, "defaultVariant": "y",
                            "targeting": {"if": [{"$ref": "a"}, "y", null]}}},
            "$evaluators": {"a": {"!": [{"$ref": "b"}]}, "b": {"!": [{"$ref": "a"}]}}
        }));
        assert_eq!(
            cyclic,
            vec!["$evaluators.b.![0].$ref: $ref cycle through evaluator \"a\"".to_owned()]
        );
    }

    #[test]
    fn timestamp_and_flag_key_are_injected() {
        let flags = set(json!({"flags": {"timed": {
            "state": "ENABLED", "variants": {"before": 0, "after": 1}, "defaultVariant": "before",
            "targeting": {"if": [{"and": [
                {">=": [{"var": "$flagd.timestamp"}, 1_700_000_000]},
                {"==": [{"var": "$flagd.flagKey"}, "timed"]}
            ]}, "after", "before"]}
        }}}));
        assert_eq!(
            flags.evaluate("timed", &json!({}), 1_699_999_999).value,
            json!(0)
        );
        assert_eq!(
            flags.evaluate("timed", &json!({}), 1_700_000_000).value,
            json!(1)
        );
        // A caller-supplied $flagd does not override the injected one.
        let spoofed = json!({"$flagd": {"timestamp": 1, "flagKey": "other"}});
        assert_eq!(
            flags.evaluate("timed", &spoofed, 1_800_000_000).value,
            json!(1)
        );
    }

    #[test]
    fn typed_evaluation_reports_type_mismatch() {
        let flags = set(json!({"flags": {
            "n": {"state": "ENABLED", "variants": {"a": 10.0, "b": 0.5}, "defaultVariant": "a"},
            "h": {"state": "ENABLED", "variants": {"a": 0.5}, "defaultVariant": "a"}
        }}));
        let as_int = flags.evaluate_as("n", &json!({}), 0, ValueType::Integer);
        assert_eq!((as_int.value, as_int.error_code), (json!(10), None));
        let half = flags.evaluate_as("h", &json!({}), 0, ValueType::Integer);
        assert_eq!(half.error_code, Some(ErrorCode::TypeMismatch));
        assert_eq!(half.reason, Reason::Error);
        let as_bool = flags.evaluate_as("n", &json!({}), 0, ValueType::Boolean);
        assert_eq!(as_bool.error_code, Some(ErrorCode::TypeMismatch));
    }

    #[test]
    fn rules_check_and_evaluate_with_custom_operations() {
        assert!(check_rule(&json!({"starts_with": [{"var": "path"}, "/shop"]})).is_ok());
        assert!(check_rule(&json!({"bogus": [1]})).is_err());
        let rule = json!({"sem_ver": [{"var": "app"}, ">=", "2.1"]});
        assert_eq!(
            evaluate_rule(&rule, &json!({"app": "v2.3.0"}), "k", 0),
            Ok(json!(true))
        );
        assert_eq!(
            evaluate_rule(&rule, &json!({"app": "2.0.9"}), "k", 0),
            Ok(json!(false))
        );
        // An unusable argument makes the rule yield null, never a spurious false.
        let banana = evaluate_rule(&rule, &json!({"app": "banana"}), "k", 0);
        assert_eq!(banana, Ok(Value::Null));
        assert!(!banana.as_ref().is_ok_and(is_truthy));
        let shop = json!({"starts_with": [{"var": "path"}, "/shop"]});
        let matched = evaluate_rule(&shop, &json!({"path": "/shop/cart"}), "k", 0);
        assert!(matched.as_ref().is_ok_and(is_truthy), "{matched:?}");
        for (value, truthy) in [(json!([]), false), (json!("0"), true), (json!(0.0), false)] {
            assert_eq!(is_truthy(&value), truthy, "{value}");
        }
    }

    #[test]
    fn fractional_bucket_follows_the_integer_formula() {
        // Keys from flagd-testbed whose hashes sit on the edges: 0, i32::MAX, 2^31, u32::MAX.
        assert_eq!(mur3::murmurhash3_x86_32(b"ejOoVL", 0), 0);
        assert_eq!(mur3::murmurhash3_x86_32(b"SI7p-", 0), 2_147_483_647);
        assert_eq!(mur3::murmurhash3_x86_32(b"6LvT0", 0), 2_147_483_648);
        assert_eq!(mur3::murmurhash3_x86_32(b"ceQdGm", 0), u32::MAX);
        assert_eq!(fractional_bucket("SI7p-", &[50, 50]), Some(0));
        assert_eq!(fractional_bucket("6LvT0", &[50, 50]), Some(1));
        assert_eq!(fractional_bucket("ceQdGm", &[1, 0, 0]), Some(0));
        assert_eq!(fractional_bucket("x", &[0, 0]), None);
        assert_eq!(fractional_bucket("x", &[i32::MAX as u64, 1]), None);
    }

    proptest! {
        #[test]
        fn fractional_bucket_is_always_a_weighted_bucket(
            key in ".{0,40}",
            weights in proptest::collection::vec(0u64..1000, 1..8),
        ) {
            let total: u64 = weights.iter().sum();
            match fractional_bucket(&key, &weights) {
                Some(i) => {
                    prop_assert!(i < weights.len());
                    prop_assert!(weights[i] > 0, "landed on a zero-weight bucket");
                }
                None => prop_assert_eq!(total, 0),
            }
        }

        #[test]
        fn fractional_distribution_follows_weights(
            weights in proptest::collection::vec(1u64..10, 2..5),
            salt in "[a-z]{4}",
        ) {
            let total: u64 = weights.iter().sum();
            let draws = 20_000u32;
            let mut counts = vec![0u32; weights.len()];
            for i in 0..draws {
                if let Some(b) = fractional_bucket(&format!("{salt}-user-{i}"), &weights) {
                    counts[b] += 1;
                }
            }
            for (count, weight) in counts.iter().zip(&weights) {
                let expected = f64::from(draws) * (*weight as f64) / (total as f64);
                // 5 sigma of a binomial count: a fair hash fails this about once in 10^6 runs.
                let sigma = (expected * (1.0 - (*weight as f64) / (total as f64))).sqrt();
                prop_assert!((f64::from(*count) - expected).abs() <= 5.0 * sigma + 1.0,
                    "count {} expected {:.0}", count, expected);
            }
        }
    }
}
