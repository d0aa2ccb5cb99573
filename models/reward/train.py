"""Train the contextual reward model from Stellwerk's training logs and export it for the edge.

Input: training rows as the aggregator writes them to object storage (NDJSON, one decision per
line: decision, ts, experiment, context, arms, arm, propensity, reward, policy, snapshot, model),
from a local directory searched recursively for `*.ndjson` — a copy of R2's `logs/training/`
(`wrangler r2 object get`, or `tests/e2e/contextual.test.mjs` pulls them), or the simulator's
output. Without `--logs` it reads `models/reward/logs/`, and when that does not exist it first
runs the simulator (`stellwerk simulate --seed 7 --visitors 20000 --logs ...`, uniform-random
traffic with known per-device click rates), so a fresh checkout reproduces the committed model.

Model: one logistic regression per arm over the context features, fitted on the rows where that
arm was shown, each row weighted by 1 / propensity (normalised per arm). Under a non-uniform
logging policy that reweights every arm's sample to the context distribution of all traffic
(importance-weighted direct method); under uniform logging the weights are all equal.

Output (next to this file, or --out DIR):
  reward.onnx           input "features" [1, d] -> one output per arm, "arm:<key>" [1, 1] (P(click))
  reward.manifest.json  the model manifest the sync path verifies (sha256, feature spec, golden)
  EVALUATION.md         held-out calibration per device and arm, and the greedy policy's IPS value
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

SEED = 20260101
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
GOLDEN_TOLERANCE = 1e-4

DEVICES = ["mobile", "desktop", "tablet"]
REFERRERS = ["direct", "internal", "search", "social", "other"]

# The feature spec (the manifest's format; shared/src/model.rs builds the same vector). Every
# source is in every logged context, and every value a context can take is listed: a contextual
# policy falls back to the plain bandit for a visitor it cannot describe.
FEATURES = [
    {"kind": "one_hot", "source": "device", "values": DEVICES},
    {"kind": "bool", "source": "returning"},
    {"kind": "one_hot", "source": "referrerClass", "values": REFERRERS},
]


def encode(context: dict) -> list[float]:
    """Mirror of the Rust `build_features` for the kinds used here."""
    out: list[float] = []
    for spec in FEATURES:
        value = context.get(spec["source"])
        if spec["kind"] == "bool":
            out.append(1.0 if value is True else 0.0)
        elif spec["kind"] == "one_hot":
            out.extend(1.0 if value == v else 0.0 for v in spec["values"])
        else:
            raise ValueError(f"unsupported feature kind {spec['kind']}")
    return out


def read_rows(logs: Path, experiment: str | None) -> list[dict]:
    rows = []
    for path in sorted(logs.rglob("*.ndjson")):
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                if experiment is None or row["experiment"] == experiment:
                    rows.append(row)
    # Batches may repeat after a retry rewrote them under another key: one row per decision.
    unique = {row["decision"]: row for row in rows}
    return [unique[k] for k in sorted(unique)]


def simulate_logs(logs: Path) -> None:
    print(f"no logs at {logs}: simulating uniform-random traffic (seed 7, 20000 visitors)")
    subprocess.run(
        ["cargo", "run", "--release", "-q", "-p", "stellwerk-cli", "--", "simulate",
         "--seed", "7", "--visitors", "20000", "--logs", str(logs)],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )


def build_onnx(arms: list[str], weights: np.ndarray, biases: np.ndarray, name: str) -> bytes:
    """features [N, d] -> per arm: Sigmoid(features @ w_arm + b_arm) named "arm:<key>" [N, 1]."""
    d = weights.shape[0]
    nodes, initializers, outputs = [], [], []
    for k, arm in enumerate(arms):
        w = numpy_helper.from_array(weights[:, k : k + 1].astype(np.float32), f"w_{k}")
        b = numpy_helper.from_array(biases[k : k + 1].astype(np.float32), f"b_{k}")
        initializers += [w, b]
        nodes += [
            helper.make_node("MatMul", ["features", f"w_{k}"], [f"logit0_{k}"]),
            helper.make_node("Add", [f"logit0_{k}", f"b_{k}"], [f"logit_{k}"]),
            helper.make_node("Sigmoid", [f"logit_{k}"], [f"arm:{arm}"]),
        ]
        outputs.append(helper.make_tensor_value_info(f"arm:{arm}", TensorProto.FLOAT, ["N", 1]))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", d])],
        outputs,
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="stellwerk-reward")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logs", type=Path, default=HERE / "logs")
    parser.add_argument("--experiment", help="only rows of this experiment (default: the most logged one)")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--name", default="reward")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--canary", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--l2", type=float, default=1.0, help="inverse regularisation C of each regression")
    args = parser.parse_args()

    if not args.logs.exists() and args.logs == HERE / "logs":
        simulate_logs(args.logs)
    rows = read_rows(args.logs, args.experiment)
    if not rows:
        raise SystemExit(f"no training rows under {args.logs}")
    experiment = args.experiment or max(
        {r["experiment"] for r in rows}, key=lambda e: sum(r["experiment"] == e for r in rows)
    )
    rows = [r for r in rows if r["experiment"] == experiment]
    arms = rows[-1]["arms"]
    rows = [r for r in rows if r["arms"] == arms]

    rng = np.random.default_rng(args.seed)
    held_out = rng.random(len(rows)) < 0.25
    x = np.array([encode(r["context"]) for r in rows], dtype=np.float32)
    y = np.array([1 if r["reward"] > 0 else 0 for r in rows])
    shown = np.array([arms.index(r["arm"]) for r in rows])
    propensity = np.array([r["propensity"] for r in rows])

    d, k = x.shape[1], len(arms)
    weights, biases = np.zeros((d, k)), np.zeros(k)
    for a in range(k):
        mask = (shown == a) & ~held_out
        if mask.sum() == 0 or len(set(y[mask])) < 2:
            raise SystemExit(f"arm {arms[a]!r} needs both clicks and non-clicks in the training rows")
        w = 1.0 / propensity[mask]
        fit = LogisticRegression(C=args.l2, max_iter=1000).fit(x[mask], y[mask], sample_weight=w / w.mean())
        weights[:, a], biases[a] = fit.coef_[0], fit.intercept_[0]

    onnx_bytes = build_onnx(arms, weights, biases, args.name)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.onnx").write_bytes(onnx_bytes)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    output_names = [f"arm:{a}" for a in arms]

    def predict(features: np.ndarray) -> np.ndarray:
        return np.hstack(session.run(output_names, {"features": features}))

    golden_context = {"path": "/", "device": "mobile", "language": "de", "referrerClass": "search",
                      "returning": True, "hourOfWeek": 37}
    golden_input = np.array([encode(golden_context)], dtype=np.float32)
    golden_output = predict(golden_input)[0]
    manifest = {
        "name": args.name,
        "version": args.version,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "inputs": [{"name": "features", "shape": [1, d]}],
        "outputs": [{"name": name, "shape": [1, 1]} for name in output_names],
        "features": FEATURES,
        "canaryPercent": args.canary,
        "golden": {
            "context": golden_context,
            "input": [float(v) for v in golden_input[0]],
            "output": [float(v) for v in golden_output],
            "tolerance": GOLDEN_TOLERANCE,
        },
    }
    (args.out / f"{args.name}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    # Held-out evaluation: calibration per device and arm, and the greedy policy's value by IPS.
    test = np.flatnonzero(held_out)
    scores = predict(x[test])
    cells = defaultdict(lambda: [0.0, 0.0, 0])
    for i, s in zip(test, scores):
        cell = cells[(rows[i]["context"].get("device"), arms[shown[i]])]
        cell[0] += s[shown[i]]
        cell[1] += y[i]
        cell[2] += 1
    greedy = scores.argmax(axis=1)
    match = greedy == shown[test]
    ips_greedy = float(np.mean(match * y[test] / propensity[test]))
    logged = float(y[test].mean())
    lines = [
        f"# {args.name} — evaluation",
        "",
        "Generated by `models/reward/train.py`; do not edit by hand.",
        "",
        f"- logs: {len(rows)} rows of experiment `{experiment}` from `{args.logs.relative_to(ROOT) if args.logs.is_relative_to(ROOT) else args.logs}`"
        f" (policies logged: {', '.join(sorted({r['policy'] for r in rows}))})",
        f"- arms: {', '.join(arms)}; {d} features ({', '.join(f['source'] for f in FEATURES)})",
        f"- model: one L2 logistic regression per arm (C = {args.l2}), rows weighted by 1/propensity",
        f"- split: {int((~held_out).sum())} train / {len(test)} held out (seed {args.seed})",
        f"- ONNX file: {len(onnx_bytes)} bytes, sha256 `{manifest['sha256']}`",
        "",
        "Held out, per device and shown arm: mean predicted click probability vs observed click rate.",
        "",
        "| device | arm | predicted | observed | rows |",
        "|---|---|---|---|---|",
    ]
    for (device, arm), (p, clicks, n) in sorted(cells.items()):
        lines.append(f"| {device} | {arm} | {p / n:.4f} | {clicks / n:.4f} | {n} |")
    lines += [
        "",
        "Policy value on the held-out rows (click rate):",
        "",
        "| policy | value |",
        "|---|---|",
        f"| logged policy (on-policy) | {logged:.4f} |",
        f"| greedy on this model (IPS estimate) | {ips_greedy:.4f} |",
        "",
        "When the logs come from the simulator (`stellwerk simulate`), the data is synthetic: visitors",
        "with known per-device click rates (see `cli/src/simulate.rs`). These figures show that the",
        "pipeline recovers them, not how real visitors behave.",
        "",
    ]
    (args.out / "EVALUATION.md").write_text("\n".join(lines))
    print(f"wrote {args.name}.onnx ({len(onnx_bytes)} bytes) from {len(rows)} rows; "
          f"greedy IPS {ips_greedy:.4f} vs logged {logged:.4f}")


if __name__ == "__main__":
    main()
