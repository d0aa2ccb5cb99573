//! The ONNX operators the edge runs, each mapped onto tract's operators.
//!
//! tract-onnx's own registry holds every operator it knows, and the linker keeps all of them:
//! convolutions, recurrent layers, FFTs and more, most of the Worker's wasm. The edge runs
//! scikit-learn linear models and small MLPs, so it registers only [`OPERATORS`]; a model using
//! anything else is refused by name when it is loaded, everywhere the core runs.
//!
//! The three `ai.onnx.ml` linear operators are not in tract 0.22; they are expanded here into
//! a matrix product, a bias and the post transform.

use tract_onnx::Onnx;
use tract_onnx::model::{OnnxOpRegister, ParsingContext};
use tract_onnx::pb::NodeProto;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::nn::{Reduce, Reducer, sigmoid};
use tract_onnx::tract_hir::internal::*;
use tract_onnx::tract_hir::ops;
use tract_onnx::tract_hir::ops::binary::Nary;
use tract_onnx::tract_hir::ops::logic::wire_with_rank_broadcast;

type Parsed = TractResult<(Box<dyn InferenceOp>, Vec<String>)>;
type Builder = fn(&ParsingContext, &NodeProto) -> Parsed;

/// Every operator the edge imports, with its parser.
pub(crate) const OPERATORS: &[(&str, Builder)] = &[
    ("Abs", |_, _| Ok((ops::math::abs().into_hir(), vec![]))),
    ("Add", |_, _| Ok((ops::math::Add.into_hir(), vec![]))),
    ("Cast", cast),
    ("Clip", clip),
    ("Concat", |_, node| {
        Ok((
            expand(ops::array::Concat::new(node.get_attr("axis")?)),
            vec![],
        ))
    }),
    ("Constant", constant),
    ("Div", |_, _| Ok((ops::math::Div.into_hir(), vec![]))),
    ("Exp", |_, _| Ok((ops::math::exp().into_hir(), vec![]))),
    ("Flatten", |_, node| {
        let axis: i64 = node.get_attr_opt("axis")?.unwrap_or(1);
        Ok((expand(ops::array::Flatten::new(axis)), vec![]))
    }),
    ("Gemm", gemm),
    ("Identity", |_, _| {
        Ok((Box::<ops::identity::Identity>::default(), vec![]))
    }),
    ("LeakyRelu", |_, node| {
        let alpha = node.get_attr_opt("alpha")?.unwrap_or(0.01);
        Ok((expand(ops::activations::LeakyRelu(alpha)), vec![]))
    }),
    ("LinearClassifier", linear_classifier),
    ("LinearRegressor", linear_regressor),
    ("Log", |_, _| Ok((ops::math::ln().into_hir(), vec![]))),
    ("MatMul", |_, _| {
        Ok((expand(ops::matmul::MatMulInference::default()), vec![]))
    }),
    ("Max", |_, _| {
        Ok((Box::new(Nary(Box::new(ops::math::Max), false)), vec![]))
    }),
    ("Min", |_, _| {
        Ok((Box::new(Nary(Box::new(ops::math::Min), false)), vec![]))
    }),
    ("Mul", |_, _| Ok((ops::math::Mul.into_hir(), vec![]))),
    ("Neg", |_, _| Ok((ops::math::neg().into_hir(), vec![]))),
    ("Normalizer", normalizer),
    ("Reciprocal", |_, _| {
        Ok((ops::math::recip().into_hir(), vec![]))
    }),
    ("Relu", |_, _| {
        Ok((expand(ops::activations::Clip::new(Some(0.0), None)), vec![]))
    }),
    ("Reshape", |_, _| {
        Ok((expand(ops::array::Reshape::default()), vec![]))
    }),
    ("Sigmoid", |_, _| Ok((sigmoid().into_hir(), vec![]))),
    ("Softmax", softmax),
    ("Sqrt", |_, _| Ok((ops::math::sqrt().into_hir(), vec![]))),
    ("Sub", |_, _| Ok((ops::math::Sub.into_hir(), vec![]))),
    ("Sum", |_, _| {
        Ok((Box::new(Nary(Box::new(ops::math::Add), false)), vec![]))
    }),
    ("Tanh", |_, _| Ok((ops::math::tanh().into_hir(), vec![]))),
];

/// The operators the edge imports, by ONNX name.
pub fn supported_onnx_operators() -> impl Iterator<Item = &'static str> {
    OPERATORS.iter().map(|(name, _)| *name)
}

/// Whether the edge imports `op_type`.
pub(crate) fn is_supported(op_type: &str) -> bool {
    OPERATORS.iter().any(|(name, _)| *name == op_type)
}

/// tract's ONNX importer with only [`OPERATORS`] registered.
pub(crate) fn edge_onnx() -> Onnx {
    let mut register = OnnxOpRegister::default();
    for (name, builder) in OPERATORS {
        register.insert(name, *builder);
    }
    Onnx {
        op_register: register,
        ..Onnx::default()
    }
}

fn cast(_: &ParsingContext, node: &NodeProto) -> Parsed {
    // Read as a code first: tract's DatumType attribute reader panics on a code it does not know.
    let code: i32 = node.get_attr("to")?;
    let Some(data_type) = tract_onnx::pb::tensor_proto::DataType::from_i32(code) else {
        bail!("Cast to unknown data type {code}");
    };
    let mut to: DatumType = data_type.try_into()?;
    // tract computes shapes and integer indices as TDim.
    if to == i64::datum_type() {
        to = TDim::datum_type();
    }
    Ok((Box::new(ops::cast::cast(to)), vec![]))
}

fn constant(ctx: &ParsingContext, node: &NodeProto) -> Parsed {
    let value = if let Some(tensor) = node.get_attr_opt("value")? {
        ctx.load_tensor(tensor)?
    } else if let Some(v) = node.get_attr_opt::<f32>("value_float")? {
        tensor0(v)
    } else if let Some(v) = node.get_attr_opt_slice::<f32>("value_floats")? {
        tensor1(v)
    } else if let Some(v) = node.get_attr_opt::<i64>("value_int")? {
        tensor0(v)
    } else if let Some(v) = node.get_attr_opt_slice::<i64>("value_ints")? {
        tensor1(v)
    } else {
        bail!("Constant without a numeric value attribute")
    };
    Ok((
        Box::new(ops::konst::Const::new(value.into_arc_tensor())?),
        vec![],
    ))
}

/// Before opset 11 the bounds are attributes; from 11 on they are optional inputs.
fn clip(ctx: &ParsingContext, node: &NodeProto) -> Parsed {
    if ctx.onnx_operator_set_version < 11 {
        let min: Option<f32> = node.get_attr_opt("min")?;
        let max: Option<f32> = node.get_attr_opt("max")?;
        return Ok((expand(ops::activations::Clip::new(min, max)), vec![]));
    }
    let mut bounds = tract_onnx::model::optional_inputs(node).skip(1);
    let min = bounds.next().flatten();
    let max = bounds.next().flatten();
    Ok((expand(ClipInputs { min, max }), vec![]))
}

#[derive(Debug, Clone)]
struct ClipInputs {
    min: Option<usize>,
    max: Option<usize>,
}

impl Expansion for ClipInputs {
    fn name(&self) -> StaticName {
        "Clip".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(
            inputs,
            1 + self.min.is_some() as usize + self.max.is_some() as usize,
        )?;
        check_output_arity(outputs, 1)?;
        for bound in [self.min, self.max].into_iter().flatten() {
            s.equals(&inputs[0].datum_type, &inputs[bound].datum_type)?;
        }
        s.equals(&inputs[0].datum_type, &outputs[0].datum_type)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut wire = inputs[0];
        if let Some(min) = self.min {
            wire = wire_with_rank_broadcast(
                format!("{prefix}.min"),
                model,
                ops::math::max(),
                &[wire, inputs[min]],
            )?[0];
        }
        if let Some(max) = self.max {
            wire = wire_with_rank_broadcast(
                format!("{prefix}.max"),
                model,
                ops::math::min(),
                &[wire, inputs[max]],
            )?[0];
        }
        Ok(tvec!(wire))
    }
}

/// Before opset 13 Softmax flattens to 2-D at `axis` (default 1); from 13 on it runs along one
/// axis (default -1).
fn softmax(ctx: &ParsingContext, node: &NodeProto) -> Parsed {
    let axis = node.get_attr_opt("axis")?;
    if ctx.onnx_operator_set_version < 13 {
        Ok((
            expand(ops::nn::LayerSoftmax::new(axis.unwrap_or(1), true)),
            vec![],
        ))
    } else {
        Ok((expand(ops::nn::Softmax::new(axis.unwrap_or(-1))), vec![]))
    }
}

fn gemm(_: &ParsingContext, node: &NodeProto) -> Parsed {
    Ok((
        expand(Gemm {
            alpha: node.get_attr_opt("alpha")?.unwrap_or(1.0),
            beta: node.get_attr_opt("beta")?.unwrap_or(1.0),
            trans_a: node.get_attr_opt("transA")?.unwrap_or(false),
            trans_b: node.get_attr_opt("transB")?.unwrap_or(false),
        }),
        vec![],
    ))
}

/// `alpha · op(A) · op(B) + beta · C`, with `op` an optional transpose.
#[derive(Debug, Clone)]
struct Gemm {
    alpha: f32,
    beta: f32,
    trans_a: bool,
    trans_b: bool,
}

impl Expansion for Gemm {
    fn name(&self) -> StaticName {
        "Gemm".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        if inputs.len() != 2 && inputs.len() != 3 {
            bail!("Gemm takes 2 or 3 inputs, got {}", inputs.len());
        }
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&inputs[1].rank, 2)?;
        s.equals(&outputs[0].rank, 2)?;
        for input in inputs {
            s.equals(&input.datum_type, &outputs[0].datum_type)?;
        }
        let (a_rows, a_cols) = if self.trans_a { (1, 0) } else { (0, 1) };
        let (b_rows, b_cols) = if self.trans_b { (1, 0) } else { (0, 1) };
        s.equals(&inputs[0].shape[a_rows], &outputs[0].shape[0])?;
        s.equals(&inputs[0].shape[a_cols], &inputs[1].shape[b_rows])?;
        s.equals(&inputs[1].shape[b_cols], &outputs[0].shape[1])?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let axes = AxesMapping::for_numpy_matmul(2, self.trans_a, self.trans_b, false)?;
        let dt = model.outlet_fact(inputs[0])?.datum_type;
        let mut wire =
            model.wire_node(format!("{prefix}.ab"), EinSum::new(axes, dt), &inputs[..2])?[0];
        if self.alpha != 1.0 {
            wire = scale(model, &format!("{prefix}.alpha"), wire, self.alpha)?;
        }
        if let Some(&c) = inputs.get(2)
            && self.beta != 0.0
        {
            let c = scale(model, &format!("{prefix}.beta"), c, self.beta)?;
            wire = wire_with_rank_broadcast(prefix, model, ops::math::add(), &[wire, c])?[0];
        }
        Ok(tvec!(wire))
    }
}

/// `wire` as f32, cast when it is another type.
fn to_f32(prefix: &str, model: &mut TypedModel, wire: OutletId) -> TractResult<OutletId> {
    if model.outlet_fact(wire)?.datum_type == f32::datum_type() {
        return Ok(wire);
    }
    let cast = ops::cast::cast(f32::datum_type());
    Ok(model.wire_node(format!("{prefix}.f32"), cast, &[wire])?[0])
}

fn scale(model: &mut TypedModel, name: &str, wire: OutletId, by: f32) -> TractResult<OutletId> {
    let factor = model.add_const(format!("{name}.cst"), tensor0(by))?;
    Ok(wire_with_rank_broadcast(name, model, ops::math::mul(), &[factor, wire])?[0])
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum PostTransform {
    None,
    Logistic,
    Softmax,
}

fn post_transform(node: &NodeProto) -> TractResult<PostTransform> {
    match node
        .get_attr_opt::<&str>("post_transform")?
        .unwrap_or("NONE")
    {
        "NONE" => Ok(PostTransform::None),
        "LOGISTIC" => Ok(PostTransform::Logistic),
        "SOFTMAX" => Ok(PostTransform::Softmax),
        other => bail!("post_transform {other} is not supported"),
    }
}

/// The score matrix `x · coefficientsᵀ + intercepts` of the linear operators, on a `[N, C]` or
/// `[C]` input: `[N, models]`.
#[derive(Debug, Clone)]
struct LinearScores {
    /// `[C, models]`.
    coefficients: Arc<Tensor>,
    intercepts: Option<Arc<Tensor>>,
}

impl LinearScores {
    fn parse(node: &NodeProto, models: usize) -> TractResult<LinearScores> {
        let coefficients: Vec<f32> = node.get_attr_vec("coefficients")?;
        if models == 0 || coefficients.is_empty() || !coefficients.len().is_multiple_of(models) {
            bail!(
                "{} coefficients do not divide into {models} model(s)",
                coefficients.len()
            );
        }
        let per_model =
            tensor1(&coefficients).into_shape(&[models, coefficients.len() / models])?;
        let intercepts = match node.get_attr_opt_vec::<f32>("intercepts")? {
            Some(v) if v.len() != models => {
                bail!("{} intercepts for {models} model(s)", v.len())
            }
            Some(v) => Some(tensor1(&v).into_shape(&[1, models])?.into_arc_tensor()),
            None => None,
        };
        Ok(LinearScores {
            coefficients: per_model.permute_axes(&[1, 0])?.into_arc_tensor(),
            intercepts,
        })
    }

    fn models(&self) -> usize {
        self.coefficients.shape()[1]
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        input: &'p TensorProxy,
        scores: &'p TensorProxy,
    ) -> InferenceResult {
        s.equals(&scores.datum_type, DatumType::F32)?;
        s.equals(&scores.rank, 2)?;
        s.given(&input.rank, move |s, rank| {
            if rank == 2 {
                s.equals(&input.shape[0], &scores.shape[0])?;
            } else {
                s.equals(&scores.shape[0], 1.to_dim())?;
            }
            Ok(())
        })
    }

    fn wire(&self, prefix: &str, model: &mut TypedModel, input: OutletId) -> TractResult<OutletId> {
        let mut x = input;
        if model.outlet_fact(x)?.rank() == 1 {
            x = model.wire_node(format!("{prefix}.batch"), AxisOp::Add(0), &[x])?[0];
        }
        x = to_f32(prefix, model, x)?;
        let w = model.add_const(format!("{prefix}.coefficients"), self.coefficients.clone())?;
        let axes = AxesMapping::for_numpy_matmul(2, false, false, false)?;
        let mut scores = model.wire_node(
            format!("{prefix}.matmul"),
            EinSum::new(axes, f32::datum_type()),
            &[x, w],
        )?[0];
        if let Some(intercepts) = &self.intercepts {
            let b = model.add_const(format!("{prefix}.intercepts"), intercepts.clone())?;
            scores = model.wire_node(format!("{prefix}.bias"), ops::math::add(), &[scores, b])?[0];
        }
        Ok(scores)
    }
}

fn linear_classifier(_: &ParsingContext, node: &NodeProto) -> Parsed {
    // The label output is the winning column's index, so only labels 0..n are supported.
    let labels = node
        .get_attr_opt_slice::<i64>("classlabels_ints")?
        .ok_or_else(|| format_err!("only classlabels_ints are supported"))?;
    if labels.len() < 2 || !labels.iter().enumerate().all(|(i, l)| *l == i as i64) {
        bail!("class labels must be 0, 1, …, n-1 (got {labels:?})");
    }
    let models = match node.get_attr_opt_vec::<f32>("intercepts")? {
        Some(intercepts) => intercepts.len(),
        None => labels.len(),
    };
    // One set of coefficients for two classes: onnxruntime scores it [1 - s, s] whatever the
    // post transform, tract and the spec's reading differ; scikit-learn exports one set per class.
    if models != labels.len() {
        bail!(
            "{models} set(s) of coefficients for {} classes: export one set per class",
            labels.len()
        );
    }
    Ok((
        expand(LinearClassifier {
            scores: LinearScores::parse(node, models)?,
            post: post_transform(node)?,
        }),
        vec![],
    ))
}

/// `ai.onnx.ml` LinearClassifier with one set of coefficients per class: outputs the label (the
/// winning class, as i64) and the `[N, classes]` scores after the post transform.
#[derive(Debug, Clone)]
struct LinearClassifier {
    scores: LinearScores,
    post: PostTransform,
}

impl Expansion for LinearClassifier {
    fn name(&self) -> StaticName {
        "LinearClassifier".into()
    }

    fn nboutputs(&self) -> TractResult<usize> {
        Ok(2)
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 2)?;
        self.scores.rules(s, &inputs[0], &outputs[1])?;
        s.equals(&outputs[1].shape[1], self.scores.models().to_dim())?;
        s.equals(&outputs[0].datum_type, DatumType::I64)?;
        s.equals(&outputs[0].rank, 1)?;
        s.equals(&outputs[0].shape[0], &outputs[1].shape[0])?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let mut scores = self.scores.wire(prefix, model, inputs[0])?;
        scores = match self.post {
            PostTransform::None => scores,
            PostTransform::Logistic => {
                model.wire_node(format!("{prefix}.logistic"), sigmoid(), &[scores])?[0]
            }
            PostTransform::Softmax => {
                use tract_onnx::tract_core::ops::nn::Softmax;
                let softmax = Softmax {
                    axes: tvec!(1),
                    ..Softmax::default()
                };
                model.wire_node(format!("{prefix}.softmax"), softmax, &[scores])?[0]
            }
        };
        let winner = model.wire_node(
            format!("{prefix}.argmax"),
            Reduce::new(tvec!(1), Reducer::ArgMax(false)),
            &[scores],
        )?[0];
        let label = model.wire_node(format!("{prefix}.label"), AxisOp::Rm(1), &[winner])?[0];
        Ok(tvec!(label, scores))
    }
}

fn linear_regressor(_: &ParsingContext, node: &NodeProto) -> Parsed {
    if post_transform(node)? != PostTransform::None {
        bail!("LinearRegressor supports post_transform NONE only");
    }
    let targets: i64 = node.get_attr_opt("targets")?.unwrap_or(1);
    let targets = usize::try_from(targets).map_err(|_| format_err!("targets {targets}"))?;
    Ok((
        expand(LinearRegressor(LinearScores::parse(node, targets)?)),
        vec![],
    ))
}

/// `ai.onnx.ml` LinearRegressor: `[N, targets]` predictions.
#[derive(Debug, Clone)]
struct LinearRegressor(LinearScores);

impl Expansion for LinearRegressor {
    fn name(&self) -> StaticName {
        "LinearRegressor".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        self.0.rules(s, &inputs[0], &outputs[0])?;
        s.equals(&outputs[0].shape[1], self.0.models().to_dim())?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        Ok(tvec!(self.0.wire(prefix, model, inputs[0])?))
    }
}

fn normalizer(_: &ParsingContext, node: &NodeProto) -> Parsed {
    let norm = match node.get_attr::<&str>("norm")? {
        "MAX" => Norm::Max,
        "L1" => Norm::L1,
        "L2" => Norm::L2,
        other => bail!("norm {other} is not supported"),
    };
    Ok((expand(Normalizer(norm)), vec![]))
}

#[derive(Debug, Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

/// `ai.onnx.ml` Normalizer: each row of a `[N, C]` input divided by its max, L1 or L2 norm.
#[derive(Debug, Clone)]
struct Normalizer(Norm);

impl Expansion for Normalizer {
    fn name(&self) -> StaticName {
        "Normalizer".into()
    }

    fn rules<'r, 'p: 'r, 's: 'r>(
        &'s self,
        s: &mut Solver<'r>,
        inputs: &'p [TensorProxy],
        outputs: &'p [TensorProxy],
    ) -> InferenceResult {
        check_input_arity(inputs, 1)?;
        check_output_arity(outputs, 1)?;
        s.equals(&inputs[0].rank, 2)?;
        s.equals(&outputs[0].datum_type, DatumType::F32)?;
        s.equals(&inputs[0].shape, &outputs[0].shape)?;
        Ok(())
    }

    fn wire(
        &self,
        prefix: &str,
        model: &mut TypedModel,
        inputs: &[OutletId],
    ) -> TractResult<TVec<OutletId>> {
        let x = to_f32(prefix, model, inputs[0])?;
        let reduce = |reducer| Reduce::new(tvec!(1), reducer);
        let norm = match self.0 {
            Norm::Max => model.wire_node(format!("{prefix}.max"), reduce(Reducer::Max), &[x])?[0],
            Norm::L1 => {
                let abs = model.wire_node(format!("{prefix}.abs"), ops::math::abs(), &[x])?[0];
                model.wire_node(format!("{prefix}.sum"), reduce(Reducer::Sum), &[abs])?[0]
            }
            Norm::L2 => {
                let squares =
                    model.wire_node(format!("{prefix}.square"), ops::math::square(), &[x])?[0];
                let sum =
                    model.wire_node(format!("{prefix}.sum"), reduce(Reducer::Sum), &[squares])?[0];
                model.wire_node(format!("{prefix}.sqrt"), ops::math::sqrt(), &[sum])?[0]
            }
        };
        model.wire_node(prefix, ops::math::div(), &[x, norm])
    }
}
