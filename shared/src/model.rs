//! ONNX models at the edge: the manifest that describes one, feature building from a request's
//! evaluation context, verified loading with tract, inference, and the canary split.
//!
//! Model bytes come in as an argument (the adapter fetched them); nothing here reads storage.
//! Loading checks, in order: the bytes' sha256 against the manifest (before any parsing, so
//! unknown bytes never reach the ONNX parser), that tract parses them, that the declared input
//! and output names and shapes match the graph, and that the golden input reproduces the golden
//! output. A model that fails any step is refused with a typed [`ModelError`].
//!
//! Loading takes tens of milliseconds; callers cache the loaded [`Model`] keyed by its sha256.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tract_onnx::prelude::{
    DatumType, Framework, InferenceFact, InferenceModelExt, Tensor, TypedModel, TypedRunnableModel,
    tvec,
};
use tract_onnx::tract_hir::infer::Factoid;

use crate::request::hex;
use crate::validate::{Invalid, Issue, Issues, field, index};

/// Largest `hashed` bucket count accepted; a larger one is a typo, not a model.
const MAX_HASHED_BUCKETS: usize = 1 << 16;
/// Largest input or output tensor (in values) a manifest may declare.
const MAX_TENSOR_VALUES: usize = 1 << 20;
/// How far a `golden.context` may drift from `golden.input` after feature building (f32 noise).
const GOLDEN_FEATURE_TOLERANCE: f32 = 1e-6;

/// A model's manifest: identity, integrity, signature, feature spec, rollout and golden example.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelManifest {
    pub name: String,
    pub version: String,
    /// Hex SHA-256 of the ONNX bytes; checked before the bytes are parsed.
    pub sha256: String,
    /// Exactly one input: the feature vector, batch dimension 1.
    pub inputs: Vec<TensorSpec>,
    /// The outputs read from the model, in order; [`Model::run`] concatenates them.
    pub outputs: Vec<TensorSpec>,
    /// How the input vector is built from the evaluation context, in order.
    pub features: Vec<FeatureSpec>,
    /// Share of units (0..=100) served this version while it is the candidate.
    pub canary_percent: f64,
    pub golden: Golden,
}

/// A named tensor and its shape; the first dimension is the batch and must be 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

/// One feature's recipe. `source` names a key of the context; `a.b` reads a nested object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeatureSpec {
    /// A number times `scale`; `default` (times `scale`) when absent or not a number.
    Numeric {
        source: String,
        #[serde(default = "unit_scale")]
        scale: f64,
        default: f64,
    },
    /// 1 for JSON `true`, else 0.
    Bool { source: String },
    /// One slot per listed string, 1 on the exact match; an unlisted value is all zeros.
    OneHot { source: String, values: Vec<String> },
    /// `buckets` slots, 1 at `u64::from_be_bytes(sha256(value)[..8]) % buckets`; non-strings are
    /// all zeros. SHA-256 because it is stable across languages and releases (Python: hashlib).
    Hashed { source: String, buckets: usize },
    /// Non-empty `/` segments of a URL path (query and fragment ignored) times `scale`.
    PathDepth {
        source: String,
        #[serde(default = "unit_scale")]
        scale: f64,
    },
}

fn unit_scale() -> f64 {
    1.0
}

/// The golden example: the model must map `input` to `output` within `tolerance`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Golden {
    /// The context `input` was built from; when present, the core's feature building must agree,
    /// which catches a trainer and an edge that read the feature spec differently.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Value>,
    pub input: Vec<f32>,
    pub output: Vec<f32>,
    pub tolerance: f32,
}

impl FeatureSpec {
    /// Where in the context this feature reads.
    pub fn source(&self) -> &str {
        match self {
            FeatureSpec::Numeric { source, .. }
            | FeatureSpec::Bool { source }
            | FeatureSpec::OneHot { source, .. }
            | FeatureSpec::Hashed { source, .. }
            | FeatureSpec::PathDepth { source, .. } => source,
        }
    }

    /// How many input values this feature contributes.
    pub fn width(&self) -> usize {
        match self {
            FeatureSpec::Numeric { .. }
            | FeatureSpec::Bool { .. }
            | FeatureSpec::PathDepth { .. } => 1,
            FeatureSpec::OneHot { values, .. } => values.len(),
            FeatureSpec::Hashed { buckets, .. } => *buckets,
        }
    }

    fn write(&self, context: &Value, out: &mut Vec<f32>) {
        let value = lookup(context, self.source());
        match self {
            FeatureSpec::Numeric { scale, default, .. } => {
                let base = value.and_then(Value::as_f64).unwrap_or(*default);
                out.push(to_f32(base * scale));
            }
            FeatureSpec::Bool { .. } => {
                out.push(if value == Some(&Value::Bool(true)) {
                    1.0
                } else {
                    0.0
                });
            }
            FeatureSpec::OneHot { values, .. } => {
                let text = value.and_then(Value::as_str);
                out.extend(
                    values
                        .iter()
                        .map(|v| if Some(v.as_str()) == text { 1.0 } else { 0.0 }),
                );
            }
            FeatureSpec::Hashed { buckets, .. } => {
                let start = out.len();
                out.resize(start + buckets, 0.0);
                if let (Some(text), Some(slot)) =
                    (value.and_then(Value::as_str), buckets.checked_sub(1))
                {
                    let bucket = (hash_u64(text.as_bytes()) % (slot as u64 + 1)) as usize;
                    out[start + bucket] = 1.0;
                }
            }
            FeatureSpec::PathDepth { scale, .. } => {
                let depth = value.and_then(Value::as_str).map_or(0, path_depth);
                out.push(to_f32(depth as f64 * scale));
            }
        }
    }
}

/// Builds the model's input vector from an evaluation context, feature by feature.
///
/// Missing or ill-typed context values never fail: they take the feature's neutral encoding
/// (the default, 0, or all zeros), because a visitor without a country still gets a decision.
pub fn build_features(features: &[FeatureSpec], context: &Value) -> Vec<f32> {
    let mut out = Vec::with_capacity(features.iter().map(FeatureSpec::width).sum());
    for feature in features {
        feature.write(context, &mut out);
    }
    out
}

/// Saturates instead of overflowing to infinity: a huge context value must not poison the model.
fn to_f32(value: f64) -> f32 {
    value.clamp(f64::from(f32::MIN), f64::from(f32::MAX)) as f32
}

pub(crate) fn lookup<'a>(context: &'a Value, source: &str) -> Option<&'a Value> {
    source
        .split('.')
        .try_fold(context, |value, key| value.as_object()?.get(key))
}

fn path_depth(path: &str) -> usize {
    let path = path.split(['?', '#']).next().unwrap_or("");
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .count()
}

fn hash_u64(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Whether this unit is served the candidate version during its canary.
///
/// The unit's bucket (0..10 000) is the first 8 bytes of
/// `sha256("{model_name}/{candidate_version}/{unit}")` modulo 10 000, so a unit stays on the same
/// side for the whole rollout, raising the percentage only adds units, and each new candidate
/// draws a fresh sample of units.
pub fn canary_serves_candidate(
    unit_hash_input: &str,
    model_name: &str,
    candidate_version: &str,
    canary_percent: f64,
) -> bool {
    if canary_percent.is_nan() || canary_percent <= 0.0 {
        return false;
    }
    let key = format!("{model_name}/{candidate_version}/{unit_hash_input}");
    let bucket = hash_u64(key.as_bytes()) % 10_000;
    (bucket as f64) < canary_percent * 100.0
}

impl ModelManifest {
    /// Parses and validates a manifest; on refusal lists every problem as `path: reason`.
    pub fn parse(bytes: &[u8]) -> Result<ModelManifest, Invalid> {
        let manifest: ModelManifest = serde_json::from_slice(bytes).map_err(|e| {
            Invalid(vec![Issue {
                path: String::new(),
                reason: format!("does not match the model manifest format: {e}"),
            }])
        })?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The number of values the feature spec produces, i.e. the model's input width.
    pub fn feature_width(&self) -> usize {
        self.features.iter().map(FeatureSpec::width).sum()
    }

    /// Checks every rule a loadable manifest must follow; `Ok` means [`Model::load`] can try it.
    pub fn validate(&self) -> Result<(), Invalid> {
        let mut issues = Issues::new();
        if self.name.trim().is_empty() {
            issues.push("name", "must not be empty");
        }
        if self.version.trim().is_empty() {
            issues.push("version", "must not be empty");
        }
        if self.sha256.len() != 64 || !self.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            issues.push("sha256", "must be 64 hexadecimal digits");
        }
        if self.inputs.len() != 1 {
            issues.push(
                "inputs",
                format!(
                    "must declare exactly one input (the feature vector), found {}",
                    self.inputs.len()
                ),
            );
        }
        if self.outputs.is_empty() {
            issues.push("outputs", "must declare at least one output");
        }
        let mut names = std::collections::BTreeSet::new();
        for (list, specs) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            for (i, spec) in specs.iter().enumerate() {
                let path = index(list, i);
                if spec.name.is_empty() {
                    issues.push(field(&path, "name"), "must not be empty");
                } else if !names.insert(spec.name.as_str()) {
                    issues.push(
                        field(&path, "name"),
                        format!("duplicate tensor name {:?}", spec.name),
                    );
                }
                check_shape(&field(&path, "shape"), &spec.shape, &mut issues);
            }
        }
        for (i, feature) in self.features.iter().enumerate() {
            check_feature(&index("features", i), feature, &mut issues);
        }
        let width = self.feature_width();
        if let Some(input) = self.inputs.first()
            && let Some(values) = tensor_values(&input.shape)
            && values != width
        {
            issues.push(
                "features",
                format!("build {width} values but inputs[0] holds {values}"),
            );
        }
        if !(0.0..=100.0).contains(&self.canary_percent) {
            issues.push("canaryPercent", "must be between 0 and 100");
        }
        self.check_golden(width, &mut issues);
        issues.finish(())
    }

    fn check_golden(&self, width: usize, issues: &mut Issues) {
        let golden = &self.golden;
        if !golden.tolerance.is_finite() || golden.tolerance < 0.0 {
            issues.push("golden.tolerance", "must be a finite number ≥ 0");
        }
        if golden.input.len() != width {
            issues.push(
                "golden.input",
                format!(
                    "has {} values, the feature spec builds {width}",
                    golden.input.len()
                ),
            );
        }
        let output_values: Option<usize> =
            self.outputs.iter().map(|o| tensor_values(&o.shape)).sum();
        if let Some(expected) = output_values
            && golden.output.len() != expected
        {
            issues.push(
                "golden.output",
                format!(
                    "has {} values, the outputs hold {expected}",
                    golden.output.len()
                ),
            );
        }
        for (name, values) in [
            ("golden.input", &golden.input),
            ("golden.output", &golden.output),
        ] {
            if let Some(i) = values.iter().position(|v| !v.is_finite()) {
                issues.push(index(name, i), "must be a finite number");
            }
        }
        if let Some(context) = &golden.context {
            if !context.is_object() {
                issues.push("golden.context", "must be an object");
            } else if golden.input.len() == width {
                let built = build_features(&self.features, context);
                if let Some(i) = (0..width)
                    .find(|&i| (built[i] - golden.input[i]).abs() > GOLDEN_FEATURE_TOLERANCE)
                {
                    issues.push(
                        "golden.context",
                        format!(
                            "builds {} at value {i}, but golden.input has {}: the feature spec is read differently",
                            built[i], golden.input[i]
                        ),
                    );
                }
            }
        }
    }
}

fn tensor_values(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, d| acc.checked_mul(*d))
        .filter(|&n| n <= MAX_TENSOR_VALUES)
}

fn check_shape(path: &str, shape: &[usize], issues: &mut Issues) {
    match shape.first() {
        None => issues.push(path, "must have at least the batch dimension"),
        Some(1) => {}
        Some(batch) => issues.push(
            index(path, 0),
            format!("the batch dimension must be 1, found {batch}"),
        ),
    }
    if let Some(i) = shape.iter().position(|&d| d == 0) {
        issues.push(index(path, i), "must be at least 1");
    }
    if tensor_values(shape).is_none() {
        issues.push(path, format!("holds more than {MAX_TENSOR_VALUES} values"));
    }
}

pub(crate) fn check_feature(path: &str, feature: &FeatureSpec, issues: &mut Issues) {
    let source = feature.source();
    if source.is_empty() || source.split('.').any(str::is_empty) {
        issues.push(
            field(path, "source"),
            "must name a context key (`a` or `a.b`)",
        );
    }
    match feature {
        FeatureSpec::Numeric { scale, default, .. } => {
            if !scale.is_finite() {
                issues.push(field(path, "scale"), "must be a finite number");
            }
            if !default.is_finite() {
                issues.push(field(path, "default"), "must be a finite number");
            }
        }
        FeatureSpec::PathDepth { scale, .. } => {
            if !scale.is_finite() {
                issues.push(field(path, "scale"), "must be a finite number");
            }
        }
        FeatureSpec::Bool { .. } => {}
        FeatureSpec::OneHot { values, .. } => {
            if values.is_empty() {
                issues.push(field(path, "values"), "must list at least one value");
            }
            let mut seen = std::collections::BTreeSet::new();
            for (i, v) in values.iter().enumerate() {
                if !seen.insert(v) {
                    issues.push(
                        index(&field(path, "values"), i),
                        format!("duplicate value {v:?}"),
                    );
                }
            }
        }
        FeatureSpec::Hashed { buckets, .. } => {
            if !(1..=MAX_HASHED_BUCKETS).contains(buckets) {
                issues.push(
                    field(path, "buckets"),
                    format!("must be between 1 and {MAX_HASHED_BUCKETS}"),
                );
            }
        }
    }
}

/// Why a model was refused or could not run.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    /// The bytes are not the ones the manifest names.
    HashMismatch { expected: String, actual: String },
    /// The manifest itself breaks a rule (see [`ModelManifest::validate`]).
    Manifest(Invalid),
    /// tract could not read, type or optimise the ONNX graph.
    Unparseable(String),
    /// A declared input or output is missing from the graph, or the graph has others.
    Signature(String),
    /// A declared shape differs from the one the graph computes.
    ShapeMismatch {
        tensor: String,
        declared: Vec<usize>,
        found: String,
    },
    /// The golden input did not reproduce the golden output.
    GoldenMismatch {
        index: usize,
        expected: f32,
        actual: f32,
        tolerance: f32,
    },
    /// An input vector of the wrong length was given to [`Model::run`].
    InputLength { expected: usize, actual: usize },
    /// tract failed while running the model.
    Run(String),
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::HashMismatch { expected, actual } => write!(
                f,
                "model bytes have sha256 {actual}, the manifest expects {expected}"
            ),
            ModelError::Manifest(invalid) => write!(f, "invalid model manifest: {invalid}"),
            ModelError::Unparseable(reason) => {
                write!(f, "model is not a usable ONNX graph: {reason}")
            }
            ModelError::Signature(reason) => {
                write!(f, "model signature differs from the manifest: {reason}")
            }
            ModelError::ShapeMismatch {
                tensor,
                declared,
                found,
            } => write!(
                f,
                "tensor {tensor:?} is declared with shape {declared:?} but the model has {found}"
            ),
            ModelError::GoldenMismatch {
                index,
                expected,
                actual,
                tolerance,
            } => write!(
                f,
                "golden output value {index} is {actual}, expected {expected} ± {tolerance}"
            ),
            ModelError::InputLength { expected, actual } => {
                write!(f, "input has {actual} values, the model takes {expected}")
            }
            ModelError::Run(reason) => write!(f, "model run failed: {reason}"),
        }
    }
}

impl std::error::Error for ModelError {}

/// A verified, optimised, runnable model with its manifest.
#[derive(Debug, Clone)]
pub struct Model {
    manifest: ModelManifest,
    plan: Arc<TypedRunnableModel<TypedModel>>,
}

impl Model {
    /// Verifies `bytes` against `manifest` and prepares them for inference; see the module doc
    /// for the order of checks.
    pub fn load(manifest: ModelManifest, bytes: &[u8]) -> Result<Model, ModelError> {
        manifest.validate().map_err(ModelError::Manifest)?;
        let actual = hex(&Sha256::digest(bytes));
        if !actual.eq_ignore_ascii_case(&manifest.sha256) {
            return Err(ModelError::HashMismatch {
                expected: manifest.sha256.to_ascii_lowercase(),
                actual,
            });
        }
        // The cache key is always lowercase hex, whatever case the manifest used.
        let mut manifest = manifest;
        manifest.sha256 = actual;
        let plan = prepare(&manifest, bytes)?;
        let model = Model { manifest, plan };
        model.check_golden()?;
        Ok(model)
    }

    /// Runs the model on one feature vector; returns the declared outputs, concatenated.
    pub fn run(&self, input: &[f32]) -> Result<Vec<f32>, ModelError> {
        let spec = &self.manifest.inputs[0];
        let expected = self.manifest.feature_width();
        if input.len() != expected {
            return Err(ModelError::InputLength {
                expected,
                actual: input.len(),
            });
        }
        let tensor = Tensor::from_shape(&spec.shape, input).map_err(run_error)?;
        let outputs = self.plan.run(tvec![tensor.into()]).map_err(run_error)?;
        let mut values = Vec::new();
        for output in outputs.iter() {
            let as_f32 = output.cast_to::<f32>().map_err(run_error)?;
            let view = as_f32.to_array_view::<f32>().map_err(run_error)?;
            values.extend(view.iter().copied());
        }
        Ok(values)
    }

    /// Builds the features from an evaluation context and runs the model on them.
    pub fn score(&self, context: &Value) -> Result<Vec<f32>, ModelError> {
        self.run(&build_features(&self.manifest.features, context))
    }

    /// Hex SHA-256 of the model bytes, the key to cache a loaded model under.
    pub fn sha256(&self) -> &str {
        &self.manifest.sha256
    }

    /// The model's version, as its manifest names it.
    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    /// The manifest this model was loaded with.
    pub fn manifest(&self) -> &ModelManifest {
        &self.manifest
    }

    fn check_golden(&self) -> Result<(), ModelError> {
        let golden = &self.manifest.golden;
        let actual = self.run(&golden.input)?;
        for (index, (&expected, &actual)) in golden.output.iter().zip(&actual).enumerate() {
            let within = (expected - actual).abs() <= golden.tolerance;
            // A NaN output is never within tolerance.
            if !within {
                return Err(ModelError::GoldenMismatch {
                    index,
                    expected,
                    actual,
                    tolerance: golden.tolerance,
                });
            }
        }
        Ok(())
    }
}

fn run_error(e: impl fmt::Display) -> ModelError {
    ModelError::Run(format!("{e:#}"))
}

fn unparseable(e: impl fmt::Display) -> ModelError {
    ModelError::Unparseable(format!("{e:#}"))
}

fn prepare(
    manifest: &ModelManifest,
    bytes: &[u8],
) -> Result<Arc<TypedRunnableModel<TypedModel>>, ModelError> {
    let onnx = crate::onnx_ops::edge_onnx();
    let mut reader = bytes;
    let mut proto = onnx
        .proto_model_for_read(&mut reader)
        .map_err(unparseable)?;
    let declared: Vec<&str> = manifest.outputs.iter().map(|o| o.name.as_str()).collect();
    prune_to_outputs(&mut proto, &declared)?;
    check_proto(&proto)?;
    let mut model = onnx.model_for_proto_model(&proto).map_err(unparseable)?;

    let spec = &manifest.inputs[0];
    let inputs = model.input_outlets().map_err(unparseable)?.to_vec();
    if inputs.len() != 1 {
        return Err(ModelError::Signature(format!(
            "the model has {} inputs, the manifest declares 1",
            inputs.len()
        )));
    }
    let input_name = model.node(inputs[0].node).name.clone();
    if input_name != spec.name {
        return Err(ModelError::Signature(format!(
            "the model's input is {input_name:?}, the manifest declares {:?}",
            spec.name
        )));
    }
    let fact = model.input_fact(0).map_err(unparseable)?;
    if let Some(dt) = fact.datum_type.concretize()
        && dt != DatumType::F32
    {
        return Err(ModelError::Signature(format!(
            "input {input_name:?} is {dt:?}, the feature vector is F32"
        )));
    }
    check_declared_shape(spec, fact)?;
    model
        .set_input_fact(
            0,
            InferenceFact::dt_shape(DatumType::F32, spec.shape.clone()),
        )
        .map_err(unparseable)?;

    model.set_output_names(&declared).map_err(unparseable)?;

    let typed = model.into_optimized().map_err(unparseable)?;
    for (i, spec) in manifest.outputs.iter().enumerate() {
        let fact = typed.output_fact(i).map_err(unparseable)?;
        if fact.shape.as_concrete() != Some(spec.shape.as_slice()) {
            return Err(ModelError::ShapeMismatch {
                tensor: spec.name.clone(),
                declared: spec.shape.clone(),
                found: format!("{:?}", fact.shape),
            });
        }
    }
    typed.into_runnable().map(Arc::new).map_err(unparseable)
}

/// Keeps only the nodes the declared outputs depend on, so a classifier's `label` branch (and
/// whatever operators it uses) is never imported.
fn prune_to_outputs(
    proto: &mut tract_onnx::pb::ModelProto,
    declared: &[&str],
) -> Result<(), ModelError> {
    let graph = proto
        .graph
        .as_mut()
        .ok_or_else(|| ModelError::Unparseable("the file holds no graph".into()))?;
    if let Some(missing) = declared
        .iter()
        .find(|d| !graph.output.iter().any(|o| o.name == **d))
    {
        let found: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
        return Err(ModelError::Signature(format!(
            "the model has no output {missing:?} (it has {found:?})"
        )));
    }
    let mut producer = std::collections::HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for output in node.output.iter().filter(|o| !o.is_empty()) {
            producer.insert(output.clone(), i);
        }
    }
    let mut needed = vec![false; graph.node.len()];
    let mut pending: Vec<String> = declared.iter().map(|d| (*d).to_owned()).collect();
    while let Some(name) = pending.pop() {
        if let Some(&i) = producer.get(&name)
            && !needed[i]
        {
            needed[i] = true;
            pending.extend(graph.node[i].input.iter().cloned());
        }
    }
    let mut keep = needed.into_iter();
    graph.node.retain(|_| keep.next().unwrap_or(false));
    graph.output.retain(|o| declared.contains(&o.name.as_str()));
    Ok(())
}

/// tract 0.22's importer unwraps tensor and attribute type codes, and copies a tensor's raw
/// bytes into a buffer sized from its dimensions: a type it does not know, a string tensor in
/// raw bytes, raw bytes that do not fill the dimensions, or a graph input without a tensor type
/// would panic, not fail.
fn check_types(graph: &tract_onnx::pb::GraphProto) -> Result<(), ModelError> {
    use tract_onnx::pb::attribute_proto::AttributeType;
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::type_proto::Value;

    let element_size = |code: i32| {
        use DataType::*;
        match DataType::from_i32(code)? {
            Int8 | Uint8 | Bool => Some(1),
            Int16 | Uint16 | Float16 => Some(2),
            Float | Int32 | Uint32 => Some(4),
            Double | Int64 | Uint64 => Some(8),
            _ => None,
        }
    };
    let refuse = |what: String| Err(ModelError::Unparseable(what));
    let node_tensors = graph.node.iter().flat_map(|n| {
        n.attribute
            .iter()
            .flat_map(|a| a.t.iter().chain(a.tensors.iter()))
    });
    for tensor in graph.initializer.iter().chain(node_tensors) {
        let Some(size) = element_size(tensor.data_type) else {
            return refuse(format!(
                "tensor {:?} has data type {}; the edge runs numeric tensors only",
                tensor.name, tensor.data_type
            ));
        };
        let bytes = tensor.dims.iter().try_fold(size, |bytes: usize, &dim| {
            usize::try_from(dim)
                .ok()
                .and_then(|dim| bytes.checked_mul(dim))
        });
        let fits = bytes.is_some_and(|b| tensor.raw_data.is_empty() || tensor.raw_data.len() == b);
        if !fits {
            return refuse(format!(
                "tensor {:?} has dimensions {:?} that its {} bytes of data do not fill",
                tensor.name,
                tensor.dims,
                tensor.raw_data.len()
            ));
        }
    }
    for node in &graph.node {
        if let Some(attr) = node
            .attribute
            .iter()
            .find(|a| AttributeType::from_i32(a.r#type).is_none())
        {
            return refuse(format!(
                "attribute {:?} of node {:?} has unknown type {}",
                attr.name, node.name, attr.r#type
            ));
        }
    }
    let initialized = |name: &str| graph.initializer.iter().any(|i| i.name == name);
    for value in graph
        .input
        .iter()
        .chain(&graph.output)
        .chain(&graph.value_info)
    {
        let known = match value.r#type.as_ref().and_then(|t| t.value.as_ref()) {
            Some(Value::TensorType(t)) => DataType::from_i32(t.elem_type).is_some(),
            // An input must say what it is unless an initializer gives it; outputs and
            // intermediate values may leave it to inference.
            None => !graph.input.contains(value) || initialized(&value.name),
        };
        if !known {
            return refuse(format!(
                "{:?} has no tensor type tract can read",
                value.name
            ));
        }
    }
    Ok(())
}

/// Refuses what tract's ONNX importer would panic on instead of returning an error, found by the
/// property tests: operators outside [`crate::onnx_ops::OPERATORS`], graph outputs that no node, input
/// or initializer produces, and control-flow subgraphs (imported recursively).
fn check_proto(proto: &tract_onnx::pb::ModelProto) -> Result<(), ModelError> {
    let graph = proto
        .graph
        .as_ref()
        .ok_or_else(|| ModelError::Unparseable("the file holds no graph".into()))?;
    if let Some(node) = graph
        .node
        .iter()
        .find(|n| !crate::onnx_ops::is_supported(&n.op_type))
    {
        return Err(ModelError::Unparseable(format!(
            "operator {:?} (node {:?}) is not among the supported operators",
            node.op_type, node.name
        )));
    }
    check_types(graph)?;
    let mut produced: std::collections::HashSet<&str> = graph
        .input
        .iter()
        .map(|i| i.name.as_str())
        .chain(graph.initializer.iter().map(|t| t.name.as_str()))
        .collect();
    for node in &graph.node {
        produced.extend(node.output.iter().map(String::as_str));
        if node
            .attribute
            .iter()
            .any(|a| a.g.is_some() || !a.graphs.is_empty())
        {
            return Err(ModelError::Unparseable(format!(
                "node {:?} ({}) holds a subgraph; control flow is not supported",
                node.name, node.op_type
            )));
        }
    }
    if let Some(output) = graph
        .output
        .iter()
        .find(|o| !produced.contains(o.name.as_str()))
    {
        return Err(ModelError::Unparseable(format!(
            "graph output {:?} is produced by no node",
            output.name
        )));
    }
    Ok(())
}

/// Compares the manifest's input shape with what the ONNX file itself declares (symbolic
/// dimensions such as a free batch size match anything).
fn check_declared_shape(spec: &TensorSpec, fact: &InferenceFact) -> Result<(), ModelError> {
    let dims: Vec<_> = fact.shape.dims().collect();
    let mismatch = || ModelError::ShapeMismatch {
        tensor: spec.name.clone(),
        declared: spec.shape.clone(),
        found: format!("{:?}", fact.shape),
    };
    if fact.shape.is_open() {
        return if dims.len() <= spec.shape.len() {
            Ok(())
        } else {
            Err(mismatch())
        };
    }
    if dims.len() != spec.shape.len() {
        return Err(mismatch());
    }
    for (dim, &declared) in dims.iter().zip(&spec.shape) {
        if let Some(known) = dim.concretize().and_then(|d| d.to_i64().ok())
            && usize::try_from(known).ok() != Some(declared)
        {
            return Err(mismatch());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(features: Value) -> Vec<FeatureSpec> {
        serde_json::from_value(features).expect("test feature spec")
    }

    #[test]
    fn numeric_scales_and_falls_back_to_default() {
        let features = spec(json!([
            {"kind": "numeric", "source": "hourOfWeek", "scale": 0.5, "default": 3.0}
        ]));
        assert_eq!(
            build_features(&features, &json!({"hourOfWeek": 10})),
            vec![5.0]
        );
        assert_eq!(build_features(&features, &json!({})), vec![1.5]);
        assert_eq!(
            build_features(&features, &json!({"hourOfWeek": "10"})),
            vec![1.5]
        );
    }

    #[test]
    fn path_depth_ignores_query_and_empty_segments() {
        assert_eq!(path_depth("/"), 0);
        assert_eq!(path_depth("/shop//shoes/?page=/a/b"), 2);
        assert_eq!(path_depth("/a/b/c#x/y"), 3);
    }

    #[test]
    fn lookup_reads_nested_keys() {
        let context = json!({"headers": {"accept-language": "de"}});
        assert_eq!(
            lookup(&context, "headers.accept-language"),
            Some(&json!("de"))
        );
        assert_eq!(lookup(&context, "headers.missing"), None);
        assert_eq!(lookup(&json!({"headers": 3}), "headers.x"), None);
    }
}
