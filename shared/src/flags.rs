//! OpenFeature flagd flag definitions: parsing, validation and evaluation.
//!
//! STUB — to be implemented (see the helper's brief). Signatures below are the contract the rest
//! of the core uses.

use serde::Serialize;
use serde_json::Value;

use crate::validate::Invalid;

/// A parsed flagd document (`{"flags": {...}, "$evaluators": {...}}`).
#[derive(Debug, Clone, Default)]
pub struct FlagSet {
    keys: Vec<String>,
}

impl FlagSet {
    /// Validates a flagd document; refuses it with every problem as `path: reason`
    /// (paths relative to the flagd document, e.g. `flags.new-banner.defaultVariant`).
    pub fn parse(document: &Value) -> Result<FlagSet, Invalid> {
        let keys = document
            .get("flags")
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        Ok(FlagSet { keys })
    }

    pub fn contains(&self, key: &str) -> bool {
        self.keys.iter().any(|k| k == key)
    }

    /// Flag keys in document order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    /// Evaluates one flag for a context, as flagd does. `now_unix_seconds` feeds `$flagd.timestamp`.
    pub fn evaluate(&self, key: &str, _context: &Value, _now_unix_seconds: u64) -> FlagResolution {
        FlagResolution {
            key: key.to_owned(),
            value: Value::Null,
            variant: None,
            reason: Reason::Error,
            error_code: Some(ErrorCode::FlagNotFound),
        }
    }
}

/// OpenFeature's resolution details, serialised as `{"key","value","variant","reason","errorCode"}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FlagResolution {
    pub key: String,
    pub value: Value,
    pub variant: Option<String>,
    pub reason: Reason,
    pub error_code: Option<ErrorCode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    Static,
    TargetingMatch,
    Split,
    Default,
    Disabled,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    FlagNotFound,
    ParseError,
    TypeMismatch,
    General,
}

/// Checks that a JsonLogic rule (with flagd's custom operations) is well-formed.
pub fn check_rule(_rule: &Value) -> Result<(), String> {
    Ok(())
}

/// Evaluates a JsonLogic rule (with flagd's custom operations) against a context.
/// `flag_key` is what `$flagd.flagKey` and `fractional`'s default bucketing key use.
pub fn evaluate_rule(
    _rule: &Value,
    _context: &Value,
    _flag_key: &str,
    _now_unix_seconds: u64,
) -> Result<Value, String> {
    Ok(Value::Bool(true))
}

/// JsonLogic truthiness.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(_) => true,
    }
}
