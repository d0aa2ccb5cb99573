"""Train the demo click-propensity MLP on synthetic visits and export it for the edge.

The data is SYNTHETIC: visits are drawn from a documented generator (seed below) whose true
click probability is a known logistic function of the visit. Nothing here has seen a real
visitor; real data comes with later work. What this proves is the pipeline: a feature spec that
Python and the Rust core read the same way, an ONNX file tract loads, and a manifest whose sha256
and golden example let the edge refuse a model that is not the one trained here.

Outputs (next to this file):
  ctr-mlp.onnx            the model, input "features" [1, 10] -> output "probabilities" [1, 2]
  ctr-mlp.manifest.json   name, version, sha256, shapes, feature spec, canary, golden example
  EVALUATION.md           held-out AUC, log loss and calibration by decile
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

SEED = 20240601
VISITS = 40_000
NAME = "ctr-mlp"
VERSION = "1.0.0"
CANARY_PERCENT = 10
GOLDEN_TOLERANCE = 1e-4
HERE = Path(__file__).resolve().parent

DEVICES = ["mobile", "desktop", "tablet"]
COUNTRIES = ["DE", "FR", "US", "GB"]

# The feature spec, in the manifest's format: the Rust core builds the same vector from a
# request's evaluation context (shared/src/model.rs, `build_features`).
FEATURES = [
    {"kind": "one_hot", "source": "device", "values": DEVICES},
    {"kind": "bool", "source": "returning"},
    {"kind": "numeric", "source": "hourOfWeek", "scale": 1 / 167, "default": 0.0},
    {"kind": "one_hot", "source": "country", "values": COUNTRIES},
    {"kind": "path_depth", "source": "path", "scale": 0.2},
]


def lookup(context: dict, source: str):
    """`a.b` reads context["a"]["b"]; anything missing is None."""
    value = context
    for part in source.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def path_depth(path: str) -> int:
    path = path.split("?", 1)[0].split("#", 1)[0]
    return sum(1 for segment in path.split("/") if segment)


def bucket(text: str, buckets: int) -> int:
    """The `hashed` kind: first 8 bytes of SHA-256, big-endian, modulo the bucket count."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def encode(context: dict) -> list[float]:
    """Mirror of the Rust `build_features`, so the golden input is the spec applied to a context."""
    out: list[float] = []
    for spec in FEATURES:
        value = lookup(context, spec["source"])
        kind = spec["kind"]
        if kind == "numeric":
            number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            base = spec.get("default", 0.0) if number is None else float(number)
            out.append(base * spec.get("scale", 1.0))
        elif kind == "bool":
            out.append(1.0 if value is True else 0.0)
        elif kind == "one_hot":
            out.extend(1.0 if value == v else 0.0 for v in spec["values"])
        elif kind == "hashed":
            slots = [0.0] * spec["buckets"]
            if isinstance(value, str):
                slots[bucket(value, spec["buckets"])] = 1.0
            out.extend(slots)
        elif kind == "path_depth":
            depth = path_depth(value) if isinstance(value, str) else 0
            out.append(depth * spec.get("scale", 1.0))
        else:
            raise ValueError(f"unknown feature kind {kind}")
    return out


def true_click_probability(context: dict) -> float:
    """The generator's known click rate: a logistic function with one interaction."""
    logit = -2.4
    device = context["device"]
    logit += {"mobile": 0.35, "desktop": 0.0, "tablet": -0.25}[device]
    if context["returning"]:
        logit += 0.8
        if device == "mobile":
            logit += 0.5  # returning mobile visitors click much more: the MLP has to find this
    how = context["hourOfWeek"]
    if how >= 120:
        logit += 0.3  # weekend
    logit += 0.4 * math.sin(2 * math.pi * (how % 24 - 14) / 24)  # afternoon peak
    logit += {"DE": 0.3, "FR": -0.1, "US": 0.2, "GB": 0.0}.get(context["country"], -0.3)
    logit -= 0.25 * path_depth(context["path"])
    return 1 / (1 + math.exp(-logit))


def synthetic_visits(rng: np.random.Generator, n: int) -> tuple[list[dict], np.ndarray, np.ndarray]:
    countries = COUNTRIES + ["NL", "JP"]
    contexts, truth, clicks = [], [], []
    for _ in range(n):
        depth = int(rng.integers(0, 5))
        context = {
            "device": str(rng.choice(DEVICES, p=[0.55, 0.35, 0.10])),
            "returning": bool(rng.random() < 0.3),
            "hourOfWeek": int(rng.integers(0, 168)),
            "country": str(rng.choice(countries, p=[0.3, 0.15, 0.25, 0.15, 0.1, 0.05])),
            "path": "/" + "/".join(f"s{i}" for i in range(depth)),
        }
        p = true_click_probability(context)
        contexts.append(context)
        truth.append(p)
        clicks.append(int(rng.random() < p))
    return contexts, np.array(truth), np.array(clicks)


def calibration_table(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[tuple[int, float, float, int]]:
    order = np.argsort(p)
    rows = []
    for i, idx in enumerate(np.array_split(order, bins)):
        rows.append((i + 1, float(p[idx].mean()), float(y[idx].mean()), len(idx)))
    return rows


def main() -> None:
    rng = np.random.default_rng(SEED)
    contexts, truth, clicks = synthetic_visits(rng, VISITS)
    x = np.array([encode(c) for c in contexts], dtype=np.float32)
    width = x.shape[1]

    idx_train, idx_test = train_test_split(
        np.arange(VISITS), test_size=0.25, random_state=SEED, stratify=clicks
    )
    model = MLPClassifier(
        hidden_layer_sizes=(16,),
        activation="relu",
        alpha=1e-3,
        batch_size=256,
        learning_rate_init=1e-3,
        # Early stopping scores accuracy, which sits at the base rate for a rare click: it would
        # stop after a few epochs. Train a fixed budget and let log loss converge instead.
        max_iter=60,
        tol=1e-5,
        n_iter_no_change=60,
        random_state=SEED,
    )
    with warnings.catch_warnings():
        # The fixed epoch budget is deliberate; the convergence warning would only say so.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x[idx_train], clicks[idx_train])

    onnx_model = convert_sklearn(
        model,
        name=NAME,
        initial_types=[("features", FloatTensorType([None, width]))],
        # Plain tensors, not a ZipMap of dicts: tract and the core read f32 tensors only.
        options={id(model): {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    onnx_bytes = onnx_model.SerializeToString()
    (HERE / f"{NAME}.onnx").write_bytes(onnx_bytes)

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    onnx_p = session.run(["probabilities"], {"features": x[idx_test]})[0][:, 1]
    sk_p = model.predict_proba(x[idx_test])[:, 1]
    max_gap = float(np.max(np.abs(onnx_p - sk_p)))
    assert max_gap < 1e-5, f"ONNX and scikit-learn disagree by {max_gap}"

    golden_context = {
        "targetingKey": "visitor-42",
        "path": "/shop/shoes/running",
        "country": "DE",
        "device": "mobile",
        "hourOfWeek": 37,
        "returning": True,
        "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
        "headers": {"accept-language": "de-DE"},
    }
    golden_input = np.array([encode(golden_context)], dtype=np.float32)
    golden_output = session.run(["probabilities"], {"features": golden_input})[0][0]

    manifest = {
        "name": NAME,
        "version": VERSION,
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "inputs": [{"name": "features", "shape": [1, width]}],
        "outputs": [{"name": "probabilities", "shape": [1, 2]}],
        "features": FEATURES,
        "canaryPercent": CANARY_PERCENT,
        "golden": {
            "context": golden_context,
            "input": [float(v) for v in golden_input[0]],
            "output": [float(v) for v in golden_output],
            "tolerance": GOLDEN_TOLERANCE,
        },
    }
    (HERE / f"{NAME}.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")

    y_test = clicks[idx_test]
    auc = roc_auc_score(y_test, onnx_p)
    ll = log_loss(y_test, onnx_p)
    oracle_auc = roc_auc_score(y_test, truth[idx_test])
    oracle_ll = log_loss(y_test, truth[idx_test])
    base_rate = float(clicks[idx_train].mean())
    base_ll = log_loss(y_test, np.full(len(y_test), base_rate))
    rows = calibration_table(onnx_p, y_test)
    ece = sum(n * abs(pm - ym) for _, pm, ym, n in rows) / len(y_test)

    lines = [
        "# ctr-mlp — evaluation",
        "",
        "Generated by `models/demo/train.py`; do not edit by hand.",
        "",
        "**The data is synthetic.** Visits come from a generator with a known click probability",
        f"(seed {SEED}, {VISITS} visits, see `true_click_probability` in `train.py`). These figures",
        "say the pipeline learns what the generator put in; they say nothing about real visitors.",
        "",
        f"- model: scikit-learn MLPClassifier, one hidden layer of 16 ReLU units, {width} inputs",
        f"- ONNX file: {len(onnx_bytes)} bytes, sha256 `{manifest['sha256']}`",
        f"- split: {len(idx_train)} train / {len(idx_test)} held out (stratified, seed {SEED})",
        f"- ONNX Runtime vs scikit-learn on the held-out set: max |Δp| = {max_gap:.2e}",
        "",
        "| held-out metric | model | true probabilities (ceiling) | base rate only |",
        "|---|---|---|---|",
        f"| ROC AUC | {auc:.4f} | {oracle_auc:.4f} | 0.5000 |",
        f"| log loss | {ll:.4f} | {oracle_ll:.4f} | {base_ll:.4f} |",
        "",
        f"Click rate: {base_rate:.4f} (train). Expected calibration error over deciles: {ece:.4f}.",
        "",
        "Calibration by decile of predicted probability (held out):",
        "",
        "| decile | mean predicted | observed click rate | visits |",
        "|---|---|---|---|",
    ]
    lines += [f"| {d} | {pm:.4f} | {ym:.4f} | {n} |" for d, pm, ym, n in rows]
    lines += [
        "",
        "Calibration note: an MLP trained on log loss is close to calibrated where it has data;",
        "the decile table is the check. Countries outside the one-hot list (here NL, JP) encode as",
        "all zeros and share one learned effect.",
        "",
    ]
    (HERE / "EVALUATION.md").write_text("\n".join(lines))
    print(f"wrote {NAME}.onnx ({len(onnx_bytes)} bytes), AUC {auc:.4f}, log loss {ll:.4f}")


if __name__ == "__main__":
    main()
