"""A 10-arm reward model with seeded random weights, for the core's benchmark of scoring all arms.

Same graph, feature spec and manifest layout as train.py's model; only the weights are random
(what is measured is cost, not accuracy). Writes shared/benches/fixtures/reward10.{onnx,manifest.json}.
"""

import hashlib
import json

import numpy as np
import onnxruntime as ort

from train import FEATURES, GOLDEN_TOLERANCE, ROOT, build_onnx, encode

ARMS = [f"arm{i}" for i in range(10)]
OUT = ROOT / "shared" / "benches" / "fixtures"


def main() -> None:
    rng = np.random.default_rng(10)
    d = len(encode({}))
    onnx_bytes = build_onnx(ARMS, rng.normal(size=(d, len(ARMS))), rng.normal(size=len(ARMS)), "reward10")
    context = {"device": "mobile", "returning": True, "referrerClass": "search"}
    features = np.array([encode(context)], dtype=np.float32)
    names = [f"arm:{a}" for a in ARMS]
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    output = np.hstack(session.run(names, {"features": features}))[0]
    manifest = {
        "name": "reward10", "version": "1.0.0", "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
        "inputs": [{"name": "features", "shape": [1, d]}],
        "outputs": [{"name": n, "shape": [1, 1]} for n in names],
        "features": FEATURES, "canaryPercent": 0,
        "golden": {"context": context, "input": [float(v) for v in features[0]],
                   "output": [float(v) for v in output], "tolerance": GOLDEN_TOLERANCE},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "reward10.onnx").write_bytes(onnx_bytes)
    (OUT / "reward10.manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {OUT}/reward10.onnx ({len(onnx_bytes)} bytes)")


if __name__ == "__main__":
    main()
