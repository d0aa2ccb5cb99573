"""One tiny ONNX model per operator (and attribute variant) the edge imports, with onnxruntime's
output for a fixed input: the reference `shared/tests/onnx_ops.rs` holds tract to.

    models/.venv/bin/python models/ops/make_cases.py   # rewrites shared/tests/fixtures/ops/

Each model takes one float input `x` of shape [1, 4] (the edge scores one visitor) (or as the case says) and has one output
`y`; second operands are initializers. Deterministic: fixed seed, no training.
"""

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = Path(__file__).resolve().parents[2] / "shared" / "tests" / "fixtures" / "ops"
rng = np.random.default_rng(7)
X = rng.normal(size=(1, 4)).astype(np.float32)
W = rng.normal(size=(4, 3)).astype(np.float32)
B = rng.normal(size=(3,)).astype(np.float32)
ROW = rng.normal(size=(1, 4)).astype(np.float32)


def init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def case(name, nodes, y_shape, inits=(), opset=17, x_shape=(1, 4), ml=False, x=None):
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))],
        list(inits),
    )
    imports = [helper.make_opsetid("", opset)]
    if ml:
        imports.append(helper.make_opsetid("ai.onnx.ml", 1))
    model = helper.make_model(graph, opset_imports=imports, producer_name="stellwerk-ops")
    model.ir_version = 8
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    x = X if x is None else x
    x = x.reshape(x_shape).astype(np.float32)
    (y,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(["y"], {"x": x})
    (OUT / f"{name}.onnx").write_bytes(data)
    return {
        "name": name,
        "operators": sorted({node.op_type for node in nodes}),
        "input_shape": list(x_shape),
        "input": [float(v) for v in x.ravel()],
        "output_shape": list(y.shape),
        "output": [float(v) for v in y.astype(np.float32).ravel()],
    }


def unary(op, **attrs):
    return [helper.make_node(op, ["x"], ["y"], **attrs)]


def binary(op):
    return [helper.make_node(op, ["x", "r"], ["y"])], [init("r", ROW)]


def classifier(name, post, coefficients, intercepts, labels):
    attrs = dict(coefficients=coefficients, intercepts=intercepts, classlabels_ints=labels,
                 post_transform=post)
    node = helper.make_node(
        "LinearClassifier", ["x"], ["label", "y"], domain="ai.onnx.ml", **attrs
    )
    return case(name, [node], (1, max(2, len(labels))), ml=True, opset=15)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for stale in OUT.glob("*.onnx"):
        stale.unlink()
    positive = np.abs(X) + 0.5
    cases = []
    for op in ["Abs", "Exp", "Neg", "Relu", "Sigmoid", "Tanh", "Identity"]:
        cases.append(case(op.lower(), unary(op), (1, 4)))
    cases.append(case("log", unary("Log"), (1, 4), x=positive))
    cases.append(case("sqrt", unary("Sqrt"), (1, 4), x=positive))
    cases.append(case("reciprocal", unary("Reciprocal"), (1, 4), x=positive))
    cases.append(case("leaky_relu", unary("LeakyRelu", alpha=0.2), (1, 4)))
    for op in ["Add", "Sub", "Mul", "Div"]:
        nodes, inits = binary(op)
        cases.append(case(op.lower(), nodes, (1, 4), inits))
    for op in ["Max", "Min", "Sum"]:
        node = helper.make_node(op, ["x", "r", "s"], ["y"])
        inits = [init("r", ROW), init("s", -ROW * 0.5)]
        cases.append(case(op.lower(), [node], (1, 4), inits))
    cases.append(
        case("matmul_add", [helper.make_node("MatMul", ["x", "w"], ["xw"]),
                            helper.make_node("Add", ["xw", "b"], ["y"])],
             (1, 3), [init("w", W), init("b", B)])
    )
    cases.append(case("gemm", [helper.make_node("Gemm", ["x", "w", "b"], ["y"])],
                      (1, 3), [init("w", W), init("b", B)]))
    cases.append(case("gemm_trans_b_alpha_beta",
                      [helper.make_node("Gemm", ["x", "wt", "b"], ["y"], transB=1, alpha=0.5, beta=2.0)],
                      (1, 3), [init("wt", W.T.copy()), init("b", B.reshape(1, 3))]))
    cases.append(case("gemm_no_c", [helper.make_node("Gemm", ["x", "w"], ["y"], alpha=2.0)],
                      (1, 3), [init("w", W)]))
    cases.append(case("clip_opset6", unary("Clip", min=-0.5, max=0.5), (1, 4), opset=6))
    cases.append(case("clip_inputs", [helper.make_node("Clip", ["x", "lo", "hi"], ["y"])], (1, 4),
                      [init("lo", np.float32(-0.5)), init("hi", np.float32(0.5))]))
    cases.append(case("clip_max_only", [helper.make_node("Clip", ["x", "", "hi"], ["y"])], (1, 4),
                      [init("hi", np.float32(0.3))]))
    cases.append(case("softmax_opset11", unary("Softmax", axis=1), (1, 4), opset=11))
    cases.append(case("softmax_opset13", unary("Softmax"), (1, 4), opset=13))
    cases.append(case("concat", [helper.make_node("Concat", ["x", "r"], ["y"], axis=1)], (1, 8),
                      [init("r", ROW)]))
    cases.append(case("constant_add", [
        helper.make_node("Constant", [], ["c"], value=init("c", ROW)),
        helper.make_node("Add", ["x", "c"], ["y"])], (1, 4)))
    cases.append(case("constant_value_float", [
        helper.make_node("Constant", [], ["c"], value_float=1.5),
        helper.make_node("Mul", ["x", "c"], ["y"])], (1, 4)))
    cases.append(case("flatten", unary("Flatten", axis=1), (1, 4), x_shape=(1, 2, 2)))
    cases.append(case("reshape", [helper.make_node("Reshape", ["x", "shape"], ["y"])], (1, 2, 2),
                      [init("shape", np.array([1, 2, 2], dtype=np.int64))]))
    cases.append(case("cast_to_double_and_back", [
        helper.make_node("Cast", ["x"], ["d"], to=TensorProto.DOUBLE),
        helper.make_node("Cast", ["d"], ["y"], to=TensorProto.FLOAT)], (1, 4)))
    for norm in ["MAX", "L1", "L2"]:
        node = helper.make_node("Normalizer", ["x"], ["y"], domain="ai.onnx.ml", norm=norm)
        cases.append(case(f"normalizer_{norm.lower()}", [node], (1, 4), ml=True, opset=15,
                          x=positive))
    regressor = helper.make_node("LinearRegressor", ["x"], ["y"], domain="ai.onnx.ml", targets=2,
                                 coefficients=W[:, :2].T.ravel().tolist(), intercepts=[0.5, -1.0])
    cases.append(case("linear_regressor", [regressor], (1, 2), ml=True, opset=15))
    w = W[:, 0].tolist()
    for post in ["NONE", "LOGISTIC", "SOFTMAX"]:
        cases.append(classifier(f"classifier_binary_{post.lower()}", post,
                                [-v for v in w] + w, [-0.25, 0.25], [0, 1]))
    # One set of coefficients for two classes: onnxruntime answers [1 - s, s] for every post
    # transform, so the edge refuses the layout rather than pick a reading.
    refused = classifier("refused_classifier_one_set_two_classes", "LOGISTIC", w, [0.25], [0, 1])
    refused["refused"] = "set(s) of coefficients for 2 classes"
    cases.append(refused)
    cases.append(classifier("classifier_multiclass_softmax", "SOFTMAX",
                            W.T.ravel().tolist(), B.tolist(), [0, 1, 2]))
    cases.append(classifier("classifier_multiclass_none", "NONE",
                            W.T.ravel().tolist(), B.tolist(), [0, 1, 2]))
    (OUT / "cases.json").write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases)} cases in {OUT}")


if __name__ == "__main__":
    main()
