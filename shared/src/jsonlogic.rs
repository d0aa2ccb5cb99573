//! JsonLogic, evaluated straight from the rule's JSON, with flagd's custom operations.
//!
//! This replaces the datalogic-rs crate (see `bench/RESULTS.md`): its compiled dispatcher
//! was 733 KB of the Worker's code, half of it a second copy that a generic, always-inlined
//! entry point instantiates in our crate, and it kept the wasm over 1.5 MB gzip. Targeting
//! rules are a handful of nodes, so walking the JSON costs no more than compiling it.
//!
//! The semantics are datalogic-rs 5.4's (with loose-equality errors off, as flagd needs),
//! which `shared/tests/jsonlogic_differential.rs` checks on generated rules and data:
//! - numbers stay integers while integer arithmetic does not overflow, else become floats;
//!   an integral float result reads back as an integer; a non-finite result is `null`;
//! - `+ - * / %` read `null` as 0, booleans as 0/1 and numeric strings as numbers (`""` is
//!   0); any other operand is an error, as is dividing by zero; a single argument that is an
//!   array (`{"+": {"var": "prices"}}`) gives the operands;
//! - `< <= > >=` compare two strings as text, anything else as numbers (same coercions; a
//!   string that is not a number is false against `null` or a boolean, an error against a
//!   number) and chain pairwise over every argument; `== !=` use datalogic's loose table
//!   (`null == 0`, `true == "true"`, unlike types unequal), `=== !==` structural equality;
//!   `==` and `===` compare the first argument with each other one, `!=` and `!==` read two;
//! - `max`/`min` take numbers only (a computed array's items too); `missing` reports keys
//!   absent from the data (a `null` or `""` value is present); `missing_some` needs one key
//!   when its count is not a whole number; `map`/`filter`/`reduce`/`all`/`some`/`none` iterate
//!   arrays, the values of objects (`filter` keeps an object's entries), and nothing for
//!   `null`; `merge` drops `null`s; `{}` is falsy.
//!
//! Where datalogic fails or is accidental, this engine does what JsonLogic documents (each
//! has a unit test below): `log` yields its argument instead of failing; a non-array
//! argument (`{"or": 0}`, `{"if": true}`) is one argument; iterating a string or number is
//! an error; `reduce`'s logic sees the data `{"current": …, "accumulator": …}` (datalogic
//! gives it the current item, with those two names as special paths); dividing by anything
//! that reads as zero fails (datalogic fails for `1 / 0` but answers f64::MAX for `1 / null`);
//! a `missing_some` count that is a fraction needs one key wherever it comes from (datalogic
//! does so for a computed count, but rounds a written or constant one down).

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Number, Value};

/// Why a rule could not be evaluated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogicError {
    /// A flagd custom operation refused its arguments: the targeting resolves to the default.
    Refused(String),
    /// A JsonLogic operation failed (bad arity, an operand that is not a number, …).
    Failed(String),
}

impl fmt::Display for LogicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogicError::Refused(reason) | LogicError::Failed(reason) => f.write_str(reason),
        }
    }
}

impl std::error::Error for LogicError {}

type Outcome = Result<Value, LogicError>;

/// A flagd custom operation: its evaluated arguments and the rule's root data in, a value out.
pub type CustomOperation = fn(&[Value], &Value) -> Outcome;

/// Evaluates `rule` against `data`. `custom` resolves operator names JsonLogic does not know;
/// the caller has already refused rules with unknown operators or multi-key objects.
pub fn evaluate(
    rule: &Value,
    data: &Value,
    custom: fn(&str) -> Option<CustomOperation>,
) -> Outcome {
    Evaluator { root: data, custom }.eval(rule, data)
}

/// JsonLogic truthiness: `0`, `""`, `[]`, `{}`, `null` and `false` are false.
pub fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

fn fail<T>(operator: &str, reason: &str) -> Result<T, LogicError> {
    Err(LogicError::Failed(format!("{operator}: {reason}")))
}

struct Evaluator<'r> {
    root: &'r Value,
    custom: fn(&str) -> Option<CustomOperation>,
}

impl Evaluator<'_> {
    fn eval(&self, rule: &Value, data: &Value) -> Outcome {
        match rule {
            Value::Array(items) => items
                .iter()
                .map(|item| self.eval(item, data))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            Value::Object(object) => match object.iter().next() {
                Some((operator, args)) if object.len() == 1 => {
                    let args = match args {
                        Value::Array(items) => items.as_slice(),
                        single => std::slice::from_ref(single),
                    };
                    self.operate(operator, args, data)
                }
                _ => Ok(rule.clone()),
            },
            scalar => Ok(scalar.clone()),
        }
    }

    fn eval_all(&self, args: &[Value], data: &Value) -> Result<Vec<Value>, LogicError> {
        args.iter().map(|arg| self.eval(arg, data)).collect()
    }

    fn eval_nth(&self, args: &[Value], n: usize, data: &Value) -> Outcome {
        args.get(n)
            .map_or(Ok(Value::Null), |arg| self.eval(arg, data))
    }

    /// The evaluated arguments of an arithmetic operation, or the items of its single argument
    /// when that is an array (one written as a literal only if `spread_written`); the flag
    /// says whether an array was spread.
    fn operands(
        &self,
        args: &[Value],
        data: &Value,
        spread_written: bool,
    ) -> Result<(Vec<Value>, bool), LogicError> {
        let mut values = self.eval_all(args, data)?;
        let written = matches!(args, [Value::Array(_)]);
        if let [Value::Array(items)] = values.as_mut_slice()
            && (spread_written || !written)
        {
            return Ok((std::mem::take(items), true));
        }
        Ok((values, false))
    }

    fn operate(&self, operator: &str, args: &[Value], data: &Value) -> Outcome {
        match operator {
            "var" => {
                let args = self.eval_all(args, data)?;
                let found = match args.first() {
                    None => Some(data.clone()),
                    Some(path) => var_path(data, path),
                };
                Ok(found.unwrap_or_else(|| args.get(1).cloned().unwrap_or(Value::Null)))
            }
            "val" => {
                let mut value = data;
                for segment in &self.eval_all(args, data)? {
                    let Some(next) = segment_key(segment).and_then(|key| child(value, &key)) else {
                        return Ok(Value::Null);
                    };
                    value = next;
                }
                Ok(value.clone())
            }
            "missing" => {
                let keys = self.eval_all(args, data)?;
                Ok(Value::Array(missing(data, flatten(&keys))))
            }
            "missing_some" => {
                let need = match self.eval_nth(args, 0, data)? {
                    Value::Number(n) => n.as_f64().filter(|f| f.fract() == 0.0).unwrap_or(1.0),
                    _ => 1.0,
                };
                let keys = match self.eval_nth(args, 1, data)? {
                    Value::Array(keys) => keys,
                    _ => Vec::new(),
                };
                let absent = missing(data, keys.clone());
                let present = keys.iter().filter(|k| k.is_string()).count() - absent.len();
                Ok(Value::Array(if present as f64 >= need {
                    Vec::new()
                } else {
                    absent
                }))
            }
            "if" | "?:" => {
                let mut pairs = args.chunks_exact(2);
                for pair in pairs.by_ref() {
                    if is_truthy(&self.eval(&pair[0], data)?) {
                        return self.eval(&pair[1], data);
                    }
                }
                self.eval_nth(pairs.remainder(), 0, data)
            }
            "or" | "and" => {
                let mut last = Value::Null;
                for arg in args {
                    last = self.eval(arg, data)?;
                    if is_truthy(&last) == (operator == "or") {
                        break;
                    }
                }
                Ok(last)
            }
            "!" => Ok(Value::Bool(!is_truthy(&self.eval_nth(args, 0, data)?))),
            "!!" => Ok(Value::Bool(is_truthy(&self.eval_nth(args, 0, data)?))),
            "==" | "!=" | "===" | "!==" | "<" | "<=" | ">" | ">=" => {
                self.compare_chain(operator, args, data)
            }
            "+" | "*" | "-" | "/" | "%" => {
                // `+` and `*` keep a written array as one (non-numeric) operand, as datalogic.
                let spread_written = matches!(operator, "-" | "/" | "%");
                let (values, spread) = self.operands(args, data, spread_written)?;
                let operands = values
                    .iter()
                    .map(|v| number_operand(operator, v))
                    .collect::<Result<Vec<_>, _>>()?;
                match operands.as_slice() {
                    // A spread array of one is that number: `-` and `/` negate or invert
                    // only a single written argument.
                    [only] if spread => Ok(only.into_value()),
                    _ => arithmetic(operator, &operands),
                }
            }
            "max" | "min" => {
                let wanted = if operator == "max" {
                    Ordering::Greater
                } else {
                    Ordering::Less
                };
                let (values, _) = self.operands(args, data, false)?;
                let mut best: Option<(Num, &Value)> = None;
                for value in &values {
                    let Value::Number(n) = value else {
                        return fail(operator, "takes numbers only");
                    };
                    let n = Num::of(n);
                    if best.is_none_or(|(b, _)| n.cmp(b) == wanted) {
                        best = Some((n, value));
                    }
                }
                best.map_or_else(
                    || fail(operator, "needs an argument"),
                    |(_, v)| Ok(v.clone()),
                )
            }
            "map" | "filter" | "all" | "some" | "none" => {
                let [collection, logic] = args else {
                    return fail(operator, "takes [collection, logic]");
                };
                let collection = self.eval(collection, data)?;
                self.iterate(operator, collection, logic)
            }
            "reduce" => {
                let (collection, logic) = match args {
                    [c, l] | [c, l, _] => (c, l),
                    _ => return fail(operator, "takes [collection, logic, initial]"),
                };
                let items = items_of(operator, self.eval(collection, data)?)?;
                let mut accumulator = self.eval_nth(args, 2, data)?;
                for current in items {
                    let mut scope = Map::new();
                    scope.insert("current".to_owned(), current);
                    scope.insert("accumulator".to_owned(), accumulator);
                    accumulator = self.eval(logic, &Value::Object(scope))?;
                }
                Ok(accumulator)
            }
            "merge" => {
                let mut merged = Vec::new();
                for value in self.eval_all(args, data)? {
                    match value {
                        Value::Array(items) => {
                            merged.extend(items.into_iter().filter(|v| !v.is_null()))
                        }
                        Value::Null => {}
                        other => merged.push(other),
                    }
                }
                Ok(Value::Array(merged))
            }
            "in" if args.len() < 2 => Ok(Value::Bool(false)),
            "in" => {
                let needle = self.eval_nth(args, 0, data)?;
                let haystack = self.eval_nth(args, 1, data)?;
                Ok(Value::Bool(match (&needle, &haystack) {
                    (Value::String(n), Value::String(h)) => h.contains(n.as_str()),
                    (_, Value::Array(items)) => items.iter().any(|item| strict_eq(item, &needle)),
                    _ => false,
                }))
            }
            "cat" => {
                let mut text = String::new();
                for value in self.eval_all(args, data)? {
                    cat_into(&mut text, &value);
                }
                Ok(Value::String(text))
            }
            "substr" => {
                let args = self.eval_all(args, data)?;
                let text = match args.first() {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                };
                let start = args.get(1).and_then(Value::as_i64).unwrap_or(0);
                let length = args.get(2).and_then(Value::as_i64);
                Ok(Value::String(substr(&text, start, length)))
            }
            "log" => self.eval_nth(args, 0, data),
            name => match (self.custom)(name) {
                Some(operation) => operation(&self.eval_all(args, data)?, self.root),
                None => fail(name, "unknown operator"),
            },
        }
    }

    fn compare_chain(&self, operator: &str, args: &[Value], data: &Value) -> Outcome {
        if args.len() < 2 {
            return fail(operator, "needs two arguments");
        }
        // `!=` and `!==` read two arguments; `==` and `===` compare the first with each of the
        // others; the ordering operators chain pairwise.
        let args = if operator.starts_with('!') {
            &args[..2]
        } else {
            args
        };
        let first = self.eval(&args[0], data)?;
        let mut left = first.clone();
        for arg in &args[1..] {
            let right = self.eval(arg, data)?;
            let holds = match operator {
                "==" => loose_eq(&first, &right),
                "!=" => !loose_eq(&first, &right),
                "===" => strict_eq(&first, &right),
                "!==" => !strict_eq(&first, &right),
                _ => order(operator, &left, &right)?.is_some_and(|order| match operator {
                    "<" => order == Ordering::Less,
                    "<=" => order != Ordering::Greater,
                    ">" => order == Ordering::Greater,
                    _ => order != Ordering::Less,
                }),
            };
            if !holds {
                return Ok(Value::Bool(false));
            }
            left = right;
        }
        Ok(Value::Bool(true))
    }

    fn iterate(&self, operator: &str, collection: Value, logic: &Value) -> Outcome {
        if operator == "filter"
            && let Value::Object(entries) = collection
        {
            let mut kept = Map::new();
            for (key, value) in entries {
                if is_truthy(&self.eval(logic, &value)?) {
                    kept.insert(key, value);
                }
            }
            return Ok(Value::Object(kept));
        }
        let items = items_of(operator, collection)?;
        match operator {
            "map" => items
                .iter()
                .map(|item| self.eval(logic, item))
                .collect::<Result<_, _>>()
                .map(Value::Array),
            "filter" => {
                let mut kept = Vec::new();
                for item in items {
                    if is_truthy(&self.eval(logic, &item)?) {
                        kept.push(item);
                    }
                }
                Ok(Value::Array(kept))
            }
            _ => {
                let mut any = false;
                let mut every = true;
                for item in &items {
                    let truthy = is_truthy(&self.eval(logic, item)?);
                    any |= truthy;
                    every &= truthy;
                    // all stops at the first false, some and none at the first true.
                    if (operator == "all") != truthy {
                        break;
                    }
                }
                Ok(Value::Bool(match operator {
                    "all" => every && !items.is_empty(),
                    "some" => any,
                    _ => !any,
                }))
            }
        }
    }
}

/// What iteration operations walk: an array's items, an object's values, nothing for null.
fn items_of(operator: &str, collection: Value) -> Result<Vec<Value>, LogicError> {
    match collection {
        Value::Array(items) => Ok(items),
        Value::Object(entries) => Ok(entries.into_iter().map(|(_, v)| v).collect()),
        Value::Null => Ok(Vec::new()),
        _ => fail(operator, "can only iterate an array or an object"),
    }
}

/// A `var` path: `null` or `""` is the data itself; a string is split on dots; a number is
/// one key or index. `None` when the path does not exist.
fn var_path(data: &Value, path: &Value) -> Option<Value> {
    match path {
        Value::Null => Some(data.clone()),
        Value::String(s) if s.is_empty() => Some(data.clone()),
        Value::String(s) => s
            .split('.')
            .try_fold(data, |value, key| child(value, key))
            .cloned(),
        Value::Number(n) => child(data, &n.to_string()).cloned(),
        _ => None,
    }
}

fn segment_key(segment: &Value) -> Option<String> {
    match segment {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn child<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
    match value {
        Value::Object(object) => object.get(key),
        Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    }
}

/// `missing`'s keys: arrays among the arguments are spread one level.
fn flatten(keys: &[Value]) -> Vec<Value> {
    let mut flat = Vec::new();
    for key in keys {
        match key {
            Value::Array(items) => flat.extend(items.iter().cloned()),
            other => flat.push(other.clone()),
        }
    }
    flat
}

/// The string keys whose dotted path is absent from `data` (other keys are ignored).
fn missing(data: &Value, keys: Vec<Value>) -> Vec<Value> {
    keys.into_iter()
        .filter(|key| {
            key.as_str()
                .is_some_and(|path| var_path(data, &Value::from(path)).is_none())
        })
        .collect()
}

/// `cat`'s text of a value: an array's items run together, anything nested is JSON.
fn cat_into(text: &mut String, value: &Value) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| cat_scalar(text, item)),
        other => cat_scalar(text, other),
    }
}

fn cat_scalar(text: &mut String, value: &Value) {
    match value {
        Value::Null => {}
        Value::String(s) => text.push_str(s),
        other => text.push_str(&other.to_string()),
    }
}

/// Characters from `start` (negative: from the end), `length` of them, or (negative) up to
/// that many before the end.
fn substr(text: &str, start: i64, length: Option<i64>) -> String {
    let chars: Vec<char> = text.chars().collect();
    let count = chars.len() as i64;
    let start = if start < 0 {
        (count + start).max(0)
    } else {
        start.min(count)
    };
    let end = match length {
        None => count,
        Some(l) if l >= 0 => (start + l).min(count),
        Some(l) => (count + l).max(start),
    };
    chars[start as usize..end as usize].iter().collect()
}

/// A JsonLogic number: integer while it can be, float otherwise.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(n: &Number) -> Num {
        n.as_i64()
            .map_or_else(|| Num::Float(n.as_f64().unwrap_or(f64::NAN)), Num::Int)
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn add(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.checked_add(b).map(Num::Int),
            _ => None,
        }
        .unwrap_or(Num::Float(self.as_f64() + other.as_f64()))
    }

    fn mul(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.checked_mul(b).map(Num::Int),
            _ => None,
        }
        .unwrap_or(Num::Float(self.as_f64() * other.as_f64()))
    }

    fn cmp(self, other: Num) -> Ordering {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.cmp(&b),
            _ => self
                .as_f64()
                .partial_cmp(&other.as_f64())
                .unwrap_or(Ordering::Equal),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Num::Int(i) => Value::from(i),
            Num::Float(f) if f.fract() == 0.0 && f.abs() < 9.2e18 => Value::from(f as i64),
            Num::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        }
    }
}

/// The number an arithmetic or ordering operand stands for, if any.
fn to_number(value: &Value) -> Option<Num> {
    match value {
        Value::Null => Some(Num::Int(0)),
        Value::Bool(b) => Some(Num::Int(i64::from(*b))),
        Value::Number(n) => Some(Num::of(n)),
        Value::String(s) if s.is_empty() => Some(Num::Int(0)),
        Value::String(s) => s
            .parse::<i64>()
            .map(Num::Int)
            .ok()
            .or_else(|| s.parse::<f64>().ok().map(Num::Float)),
        Value::Array(_) | Value::Object(_) => None,
    }
}

fn number_operand(operator: &str, value: &Value) -> Result<Num, LogicError> {
    match to_number(value) {
        Some(n) => Ok(n),
        None => fail(operator, "an operand is not a number"),
    }
}

fn arithmetic(operator: &str, operands: &[Num]) -> Outcome {
    let (first, rest) = match (operator, operands) {
        ("+", _) => return Ok(sum_or_product(Num::Int(0), operands, Num::add)),
        ("*", _) => return Ok(sum_or_product(Num::Int(1), operands, Num::mul)),
        (_, []) | ("%", [_]) => return fail(operator, "needs more arguments"),
        ("-", [only]) => return Ok(Num::Int(0).sub(*only).into_value()),
        ("/", [only]) => return divide(Num::Int(1), *only).map(Num::into_value),
        (_, [first, rest @ ..]) => (*first, rest),
    };
    rest.iter()
        .try_fold(first, |total, operand| match operator {
            "-" => Ok(total.sub(*operand)),
            "/" => divide(total, *operand),
            _ => remainder(total, *operand),
        })
        .map(Num::into_value)
}

fn sum_or_product(start: Num, operands: &[Num], step: fn(Num, Num) -> Num) -> Value {
    operands
        .iter()
        .fold(start, |total, n| step(total, *n))
        .into_value()
}

impl Num {
    fn sub(self, other: Num) -> Num {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => a.checked_sub(b).map(Num::Int),
            _ => None,
        }
        .unwrap_or(Num::Float(self.as_f64() - other.as_f64()))
    }
}

fn divide(a: Num, b: Num) -> Result<Num, LogicError> {
    if b.as_f64() == 0.0 {
        return fail("/", "division by zero");
    }
    Ok(Num::Float(a.as_f64() / b.as_f64()))
}

fn remainder(a: Num, b: Num) -> Result<Num, LogicError> {
    match (a, b) {
        (_, Num::Int(0)) => fail("%", "division by zero"),
        (Num::Int(a), Num::Int(b)) => Ok(a.checked_rem(b).map_or(Num::Int(0), Num::Int)),
        _ if b.as_f64() == 0.0 => fail("%", "division by zero"),
        _ => Ok(Num::Float(a.as_f64() % b.as_f64())),
    }
}

/// `<`-family order: two strings as text, anything else as numbers. `None` (every comparison
/// false) for a string that is not a number against `null` or a boolean; against a number,
/// or for an array or object, an error.
fn order(operator: &str, left: &Value, right: &Value) -> Result<Option<Ordering>, LogicError> {
    if let (Value::String(a), Value::String(b)) = (left, right) {
        return Ok(Some(a.cmp(b)));
    }
    match (to_number(left), to_number(right)) {
        (Some(a), Some(b)) => Ok(Some(a.cmp(b))),
        (None, Some(_)) if left.is_string() && (right.is_null() || right.is_boolean()) => Ok(None),
        (Some(_), None) if right.is_string() && (left.is_null() || left.is_boolean()) => Ok(None),
        _ => fail(operator, "an operand is not a number"),
    }
}

/// `===`: same type and same value, arrays and objects compared element by element.
fn strict_eq(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| strict_eq(x, y))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, x)| b.get(key).is_some_and(|y| strict_eq(x, y)))
        }
        _ => left == right,
    }
}

/// `==`, as datalogic-rs reads it with loose-equality errors off.
fn loose_eq(left: &Value, right: &Value) -> bool {
    use Value::{Array, Bool, Null, String};
    match (left, right) {
        (Value::Number(n), String(s)) | (String(s), Value::Number(n)) => {
            s.parse::<f64>().ok() == n.as_f64()
        }
        (Value::Number(n), Bool(b)) | (Bool(b), Value::Number(n)) => {
            n.as_f64() == Some(if *b { 1.0 } else { 0.0 })
        }
        (String(s), Bool(b)) | (Bool(b), String(s)) => s == if *b { "true" } else { "false" },
        (Null, Value::Number(n)) | (Value::Number(n), Null) => n.as_f64() == Some(0.0),
        (Null, Bool(b)) | (Bool(b), Null) => !b,
        (Null, String(s)) | (String(s), Null) => s.is_empty(),
        (Array(_), Array(_)) | (Value::Number(_), Value::Number(_)) => strict_eq(left, right),
        (Value::Object(_), _) | (_, Value::Object(_)) => false,
        _ => left == right,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_custom(_: &str) -> Option<CustomOperation> {
        None
    }

    fn eval(rule: Value) -> Outcome {
        let data = json!({"a": 1, "s": "hello", "n": null, "arr": [1, 2, 3], "o": {"x": {"y": 5}}});
        evaluate(&rule, &data, no_custom)
    }

    #[test]
    fn log_yields_its_argument() {
        assert_eq!(eval(json!({"log": [{"var": "a"}]})), Ok(json!(1)));
        assert_eq!(eval(json!({"log": "x"})), Ok(json!("x")));
    }

    #[test]
    fn a_non_array_argument_is_one_argument() {
        assert_eq!(eval(json!({"or": 0})), Ok(json!(0)));
        assert_eq!(eval(json!({"if": true})), Ok(json!(true)));
        assert_eq!(eval(json!({"!": {"var": "a"}})), Ok(json!(false)));
    }

    #[test]
    fn iterating_a_scalar_is_an_error() {
        for rule in [
            json!({"map": ["abc", {"var": ""}]}),
            json!({"some": [3, {"var": ""}]}),
            json!({"reduce": ["abc", {"var": "current"}, 0]}),
        ] {
            assert!(
                matches!(eval(rule.clone()), Err(LogicError::Failed(_))),
                "{rule}"
            );
        }
    }

    #[test]
    fn reduce_sees_current_and_accumulator_as_its_data() {
        let rule = json!({"reduce": [[1, 2], {"missing": ["current", "accumulator", "a"]}, 0]});
        assert_eq!(eval(rule), Ok(json!(["a"])));
        let sum = json!({"reduce": [{"var": "arr"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 10]});
        assert_eq!(eval(sum), Ok(json!(16)));
    }

    #[test]
    fn dividing_by_zero_fails_however_zero_is_written() {
        for divisor in [
            json!(0),
            json!(0.0),
            json!(null),
            json!(false),
            json!(""),
            json!("0"),
        ] {
            for operator in ["/", "%"] {
                let result = eval(json!({ operator: [1, divisor] }));
                assert!(
                    matches!(result, Err(LogicError::Failed(_))),
                    "{operator} {divisor}"
                );
            }
        }
    }

    #[test]
    fn a_fractional_missing_some_count_needs_one_key_written_or_computed() {
        let data = json!({"a": 1, "half": 0.5});
        for count in [json!(0.5), json!({"var": "half"}), json!(2.5)] {
            let rule = json!({"missing_some": [count, ["a", "zz"]]});
            assert_eq!(evaluate(&rule, &data, no_custom), Ok(json!([])), "{rule}");
            let rule = json!({"missing_some": [count, ["yy", "zz"]]});
            assert_eq!(
                evaluate(&rule, &data, no_custom),
                Ok(json!(["yy", "zz"])),
                "{rule}"
            );
        }
        let whole = json!({"missing_some": [2.0, ["a", "zz"]]});
        assert_eq!(evaluate(&whole, &data, no_custom), Ok(json!(["zz"])));
    }

    #[test]
    fn integers_stay_exact_and_overflow_to_floats() {
        assert_eq!(
            eval(json!({"+": [9007199254740993_i64, 0]})),
            Ok(json!(9007199254740993_i64))
        );
        assert_eq!(
            eval(json!({"*": [i64::MAX, 2]})),
            Ok(json!(1.8446744073709552e19))
        );
        assert_eq!(eval(json!({"*": [1e308, 10]})), Ok(Value::Null));
        assert_eq!(eval(json!({"/": [4, 2]})), Ok(json!(2)));
        assert_eq!(eval(json!({"%": [i64::MIN, -1]})), Ok(json!(0)));
    }

    #[test]
    fn custom_operations_see_evaluated_arguments_and_the_root() {
        fn custom(name: &str) -> Option<CustomOperation> {
            (name == "probe")
                .then_some(|args: &[Value], root: &Value| Ok(json!([args, root.get("a")])))
        }
        let data = json!({"a": 1, "items": [5]});
        let rule = json!({"map": [{"var": "items"}, {"probe": [{"var": ""}, "k"]}]});
        assert_eq!(evaluate(&rule, &data, custom), Ok(json!([[[5, "k"], 1]])));
        let unknown = evaluate(&json!({"nope": []}), &data, custom);
        assert!(matches!(unknown, Err(LogicError::Failed(_))));
    }
}
