//! The core's JsonLogic engine against datalogic-rs 5.4, the crate it replaced: on generated
//! rules and data, both give the same value or both fail. The generator stays inside what the
//! two are meant to agree on; `src/jsonlogic.rs` lists (and unit-tests) the few places where
//! the core follows JsonLogic's documentation instead (`log`, a bare non-array argument,
//! iterating a scalar, `reduce`'s data, dividing by zero), and those are not generated.

use datalogic_rs::{DataValue, Engine, EvaluationConfig};
use proptest::prelude::*;
use serde_json::{Value, json};
use stellwerk_core::jsonlogic::{self, CustomOperation};

fn datalogic(rule: &Value, data: &Value) -> Option<Value> {
    let engine = Engine::builder()
        .with_config(EvaluationConfig::default().with_loose_equality_errors(false))
        .build();
    let logic = engine.compile(rule).ok()?;
    let arena = datalogic_rs::bumpalo::Bump::new();
    engine.evaluate(&logic, data, &arena).ok().map(to_json)
}

fn to_json(value: &DataValue<'_>) -> Value {
    match value {
        DataValue::Null => Value::Null,
        DataValue::Bool(b) => Value::Bool(*b),
        DataValue::Number(n) => match n.as_i64() {
            Some(i) if n.is_integer() => Value::from(i),
            _ => serde_json::Number::from_f64(n.as_f64()).map_or(Value::Null, Value::Number),
        },
        DataValue::String(s) => Value::String((*s).to_owned()),
        DataValue::Array(items) => Value::Array(items.iter().map(to_json).collect()),
        DataValue::Object(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), to_json(v)))
                .collect(),
        ),
        #[allow(unreachable_patterns)]
        _ => Value::Null,
    }
}

fn no_custom(_: &str) -> Option<CustomOperation> {
    None
}

fn core(rule: &Value, data: &Value) -> Option<Value> {
    jsonlogic::evaluate(rule, data, no_custom).ok()
}

/// Same JSON, numbers compared by value (`2` and `2.0` are one number). Fractions may differ
/// in their last bits: datalogic adds (or multiplies) the constant operands of `+` and `*`
/// first, at compile time, and float arithmetic is not associative.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) if x.fract() != 0.0 || y.fract() != 0.0 => {
                (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
            }
            (x, y) => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Both engines gave the same value, or both failed.
fn agree(expected: &Option<Value>, actual: &Option<Value>) -> bool {
    match (expected, actual) {
        (Some(e), Some(a)) => same(e, a),
        (None, None) => true,
        _ => false,
    }
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..12).prop_map(Value::from),
        prop::sample::select(vec![0.5, -1.5, 2.25, 1e3 + 0.5]).prop_map(|f| json!(f)),
        prop::sample::select(vec![
            "", "0", "1", "2.5", "10", "abc", "hello", "true", "a.b", "é"
        ])
        .prop_map(Value::from),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(scalar(), 4),
        prop::collection::vec(scalar(), 0..5),
        scalar(),
        scalar(),
    )
        .prop_map(|(values, arr, x, y)| {
            json!({"a": values[0], "b": values[1], "c": values[2], "d": values[3],
                   "arr": arr, "o": {"x": x, "y": y}})
        })
}

fn path() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        "a", "b", "c", "d", "arr", "arr.0", "arr.2", "o", "o.x", "o.y", "o.z", "zz", "", "a.b",
    ])
    .prop_map(Value::from)
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        3 => path().prop_map(|p| json!({"var": p})),
        1 => (path(), scalar()).prop_map(|(p, d)| json!({"var": [p, d]})),
        1 => Just(json!({"var": ""})),
    ]
}

const OPERATORS: [&str; 25] = [
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
    "merge",
    "in",
    "cat",
    "substr",
    "missing",
    "missing_some",
];

fn rule() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 40, 4, |inner| {
        let collection = prop_oneof![
            Just(json!({"var": "arr"})),
            Just(json!({"var": "o"})),
            Just(json!({"var": "zz"})),
            prop::collection::vec(scalar(), 0..4).prop_map(Value::Array),
        ];
        prop_oneof![
            4 => (prop::sample::select(OPERATORS.to_vec()), prop::collection::vec(inner.clone(), 0..4))
                .prop_map(|(op, args)| json!({ op: args })),
            1 => (
                prop::sample::select(vec!["map", "filter", "all", "some", "none"]),
                collection.clone(),
                inner.clone(),
            )
                .prop_map(|(op, c, logic)| json!({ op: [c, logic] })),
            // Inside reduce the two read only `current` and `accumulator` alike.
            1 => (
                collection,
                prop::sample::select(vec!["+", "cat", "max", "merge", "or", "<"]),
                scalar(),
                scalar(),
            )
                .prop_map(|(c, op, extra, initial)| {
                    json!({"reduce": [c, { op: [{"var": "accumulator"}, {"var": "current"}, extra] }, initial]})
                }),
            // A divisor that reads as zero is where datalogic answers f64::MAX (or 0 for 0/0);
            // the core fails instead, so the generated divisors are never zero.
            1 => (
                prop::sample::select(vec!["/", "%"]),
                inner.clone(),
                prop::sample::select(vec![json!(2), json!(-3), json!(0.5), json!("4")]),
            )
                .prop_map(|(op, dividend, divisor)| json!({ op: [dividend, divisor] })),
            1 => prop::collection::vec(inner, 0..3).prop_map(Value::Array),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn the_core_engine_agrees_with_datalogic(rule in rule(), data in data()) {
        prop_assume!(!folds_into_a_literal_array(&rule));
        prop_assume!(!has_a_fast_path_predicate(&rule));
        prop_assume!(!has_a_written_missing_some_count(&rule));
        let (expected, actual) = (datalogic(&rule, &data), core(&rule, &data));
        prop_assert!(
            agree(&expected, &actual),
            "rule {rule}\ndata {data}\ndatalogic {expected:?}\ncore {actual:?}"
        );
    }
}

/// `+ * max min` spread a single array argument unless it is written as a literal; datalogic
/// also counts as written a constant expression it folds at compile time
/// (`{"+": [{"if": [[]]}]}`) and a literal that a branch passes through
/// (`{"+": [{"if": [[{"var": "a"}]]}]}`). The core spreads every computed array, so those
/// rules are left out.
fn folds_into_a_literal_array(rule: &Value) -> bool {
    match rule {
        Value::Object(o) => o.iter().any(|(op, args)| {
            let single = match args {
                Value::Array(items) if items.len() == 1 => Some(&items[0]),
                Value::Array(_) => None,
                other => Some(other),
            };
            let folded = matches!(op.as_str(), "+" | "*" | "max" | "min")
                && single.is_some_and(may_fold_to_a_literal);
            folded || folds_into_a_literal_array(args)
        }),
        Value::Array(items) => items.iter().any(folds_into_a_literal_array),
        _ => false,
    }
}

/// An operation that datalogic may fold at compile time into the literal it yields: one
/// that reads no data, or a branch, which can pass a literal through.
fn may_fold_to_a_literal(arg: &Value) -> bool {
    fn reads_data(rule: &Value) -> bool {
        match rule {
            Value::Object(o) => o.iter().any(|(k, v)| k == "var" || reads_data(v)),
            Value::Array(items) => items.iter().any(reads_data),
            _ => false,
        }
    }
    let branches = ["if", "?:", "or", "and"]
        .iter()
        .any(|b| arg.get(b).is_some());
    arg.is_object() && (branches || !reads_data(arg))
}

/// datalogic rounds a `missing_some` count down when it is written or folds to a constant,
/// and needs one key for a computed fraction; the core needs one key for any fraction, so
/// counts that are neither a whole number as written nor computed from data are left out.
fn has_a_written_missing_some_count(rule: &Value) -> bool {
    match rule {
        Value::Object(o) => o.iter().any(|(op, args)| {
            let written = op == "missing_some"
                && args.get(0).is_some_and(|count| match count {
                    Value::Number(n) => n.as_f64().is_some_and(|f| f.fract() != 0.0),
                    Value::Object(_) => may_fold_to_a_literal(count),
                    _ => false,
                });
            written || has_a_written_missing_some_count(args)
        }),
        Value::Array(items) => items.iter().any(has_a_written_missing_some_count),
        _ => false,
    }
}

/// datalogic runs an iteration's predicate that strictly compares a `var` with a value
/// (`===` or `!==`, either way round, also under `and`, `or`, `!`, `!!`) on a fast path that
/// treats a scalar item inconsistently: `filter` over `[false]` keeps nothing for
/// `{"===": [{"var": "a"}, null]}` and nothing for its negation either, while its `map` of the
/// same predicate says true. The core evaluates predicates one way everywhere, so those rules
/// are left out.
fn has_a_fast_path_predicate(rule: &Value) -> bool {
    fn strictly_compares_a_var(predicate: &Value) -> bool {
        let Value::Object(o) = predicate else {
            return false;
        };
        o.iter().any(|(op, args)| match op.as_str() {
            "===" | "!==" => args
                .as_array()
                .is_some_and(|operands| operands.iter().any(|o| o.get("var").is_some())),
            "and" | "or" | "!" | "!!" => match args {
                Value::Array(items) => items.iter().any(strictly_compares_a_var),
                other => strictly_compares_a_var(other),
            },
            _ => false,
        })
    }
    match rule {
        Value::Object(o) => o.iter().any(|(op, args)| {
            let fast = ["filter", "map", "all", "some", "none"].contains(&op.as_str())
                && args.get(1).is_some_and(strictly_compares_a_var);
            fast || has_a_fast_path_predicate(args)
        }),
        Value::Array(items) => items.iter().any(has_a_fast_path_predicate),
        _ => false,
    }
}

#[test]
fn the_probed_edge_cases_agree() {
    let data = json!({"a": 1, "b": "2", "s": "hello", "n": null, "t": true, "e": "",
                      "arr": [1, 2, 3], "o": {"x": {"y": 5}}, "fl": 1.5, "half": 0.5});
    for rule in [
        json!({"var": ["n", 7]}),
        json!({"var": "o.x.y"}),
        json!({"var": 1}),
        json!({"missing": [["a", "zz"], "yy", "o.x.y", "e", "n"]}),
        json!({"missing_some": [2, ["a", "zz", "yy"]]}),
        json!({"missing_some": [{"var": "half"}, ["zz", "yy"]]}),
        json!({"<": [1, 2, 3, 4]}),
        json!({"<": [2, 1, "a"]}),
        json!({"==": [null, 0]}),
        json!({"==": [true, "true"]}),
        json!({"===": [{"var": "o"}, {"var": "o"}]}),
        json!({"==": [{"var": "o"}, {"var": "o"}]}),
        json!({"/": [2]}),
        json!({"%": [-7, 3]}),
        json!({"%": [7.5, 2]}),
        json!({"+": ["3", "4.5"]}),
        json!({"+": ["a", 1]}),
        json!({"cat": [true, false, null, 1, {"var": "arr"}, {"var": "o"}]}),
        json!({"substr": [{"var": "arr"}, 1]}),
        json!({"substr": ["héllo", 1, -1]}),
        json!({"filter": [{"var": "o"}, true]}),
        json!({"map": [{"var": "o"}, {"var": "y"}]}),
        json!({"reduce": [{"var": "arr"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}]}),
        json!({"all": [[], {"var": ""}]}),
        json!({"none": [[], {"var": ""}]}),
        json!({"merge": [[1], "a", true, null, {"var": "arr"}]}),
        json!({"in": [1, [1.0]]}),
        json!({"in": ["ell", "hello"]}),
        json!({"max": [1, 2.5]}),
        json!({"max": []}),
        json!({"val": ["o", "x", "y"]}),
        json!({"val": "o.x"}),
    ] {
        let (expected, actual) = (datalogic(&rule, &data), core(&rule, &data));
        assert!(
            agree(&expected, &actual),
            "{rule}: datalogic {expected:?}, core {actual:?}"
        );
    }
}
