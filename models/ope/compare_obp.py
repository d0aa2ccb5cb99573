"""Validates `stellwerk ope` against obp on the Open Bandit Dataset sample.

The sample (10,000 rows per logging policy and campaign, ZOZOTOWN, CC BY 4.0) ships inside the
source distribution of the PyPI package `obp`, under `obp/dataset/obd/`. This script

1. loads the uniform-random logs of campaign "all" with obp's OpenBanditDataset and writes them,
   in obp's row order, as the compact fixture `fixtures/obd-random-all.csv.gz`;
2. builds the evaluation policy exactly as obp's examples do: BernoulliTS with the ZOZOTOWN
   prior (`is_zozotown_prior=True`), its action distribution per position by obp's Monte Carlo
   (n_sim=100000, random_state=12345), written as `fixtures/bts-all-policy.json`;
3. computes the reward model q̂ for DR independently in numpy: the mean click of each
   (item, position), cross-fitted over 5 folds (row i in fold i % 5), falling back to the item's
   mean over all positions, then the overall mean, of the other folds;
4. runs obp's IPS, SNIPS and DR on those inputs, and `stellwerk ope` on the converted rows;
5. compares both with the ground truth: the on-policy value of the Bernoulli TS logs;
6. repeats the position-0 evaluation with Stellwerk's own Thompson sampling (`--policy` a
   snapshot, `--posteriors` carrying the same Beta parameters) instead of obp's distribution.

Writes `fixtures/obp-expected.json` (pinned by `check_fixture.py`) and prints the figures of
REPORT.md. Usage: models/ope/compare.sh (it makes the virtualenv and builds the CLI).
"""

import gzip
import io
import json
import subprocess
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
FOLDS = 5
N_SIM = 100_000
SEED = 12345


def install_torch_placeholder():
    """obp imports torch at module level for its neural-network policy learners, which this
    script never calls; PyPI's torch for Python 3.11 is a multi-GB CUDA build. A placeholder
    module stands in for the import, and anything that actually uses it raises."""

    class AnyAttribute(type):
        def __getattr__(cls, attribute):
            if attribute.startswith("__"):
                raise AttributeError(attribute)
            return cls

    class Unavailable(metaclass=AnyAttribute):
        def __init__(self, *args, **kwargs):
            raise RuntimeError("torch is a placeholder here: obp's torch code is not used")

    for name in ["torch", "torch.nn", "torch.nn.functional", "torch.optim"]:
        module = types.ModuleType(name)
        module.__getattr__ = lambda attribute: Unavailable
        sys.modules[name] = module


install_torch_placeholder()

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from obp.dataset import OpenBanditDataset  # noqa: E402
from obp.ope import DoublyRobust  # noqa: E402
from obp.ope import InverseProbabilityWeighting  # noqa: E402
from obp.ope import OffPolicyEvaluation  # noqa: E402
from obp.ope import SelfNormalizedInverseProbabilityWeighting  # noqa: E402
from obp.policy import BernoulliTS  # noqa: E402

sys.path.insert(0, str(HERE))
from obd_rows import training_rows  # noqa: E402


def write_fixture(dataset, feedback, path):
    ts_ms = pd.to_datetime(dataset.data["timestamp"]).astype("int64").values // 1_000_000
    out = io.StringIO()
    out.write("ts_ms,item_id,position,click,propensity_score\n")
    for ts, item, position, click, pscore in zip(
        ts_ms, feedback["action"], feedback["position"], feedback["reward"], feedback["pscore"]
    ):
        out.write(f"{ts},{item},{position},{click},{pscore!r}\n")
    # mtime=0: the same data gives the same bytes.
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as gz:
        gz.write(out.getvalue().encode())


def cross_fitted_means(action, position, reward, n_actions, len_list):
    """q̂[i, a, p] for every row, from the other folds only (see the module doc)."""
    n = len(reward)
    fold = np.arange(n) % FOLDS
    q = np.zeros((n, n_actions, len_list))
    for f in range(FOLDS):
        train = fold != f
        a, p, r = action[train], position[train], reward[train]
        cell_sum = np.zeros((n_actions, len_list))
        cell_n = np.zeros((n_actions, len_list))
        np.add.at(cell_sum, (a, p), r)
        np.add.at(cell_n, (a, p), 1)
        arm_sum, arm_n = cell_sum.sum(axis=1), cell_n.sum(axis=1)
        overall = r.mean() if len(r) else 0.0
        arm_mean = np.where(arm_n > 0, arm_sum / np.maximum(arm_n, 1), overall)
        cell_mean = np.where(cell_n > 0, cell_sum / np.maximum(cell_n, 1), arm_mean[:, None])
        rows = np.flatnonzero(fold == f)
        # Each row's q̂ over arms is the table at the row's own position.
        q[rows] = cell_mean[:, position[rows]].T[:, :, None]
    return q


def stellwerk_ope(binary, rows_path, policy, *extra):
    command = [str(binary), "ope", "--logs", str(rows_path), "--policy", str(policy), "--json", *extra]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def write_rows(path, fixture, position=None):
    with open(path, "w") as f:
        for row in training_rows(str(fixture), position):
            f.write(json.dumps(row, separators=(",", ":")) + "\n")


def on_policy(reward):
    return {"value": float(reward.mean()), "stdError": float(reward.std(ddof=1) / np.sqrt(len(reward)))}


def main():
    binary = Path(sys.argv[1] if len(sys.argv) > 1 else HERE.parent.parent / "target/debug/stellwerk")
    FIXTURES.mkdir(exist_ok=True)

    random_ds = OpenBanditDataset(behavior_policy="random", campaign="all")
    feedback = random_ds.obtain_batch_bandit_feedback()
    bts_feedback = OpenBanditDataset(behavior_policy="bts", campaign="all").obtain_batch_bandit_feedback()
    fixture = FIXTURES / "obd-random-all.csv.gz"
    write_fixture(random_ds, feedback, fixture)

    policy = BernoulliTS(
        n_actions=random_ds.n_actions,
        len_list=random_ds.len_list,
        is_zozotown_prior=True,
        campaign="all",
        random_state=SEED,
    )
    action_dist = policy.compute_batch_action_dist(n_rounds=feedback["n_rounds"], n_sim=N_SIM)
    cells = {
        str(p): {str(a): float(action_dist[0, a, p]) for a in range(random_ds.n_actions) if action_dist[0, a, p] > 0}
        for p in range(random_ds.len_list)
    }
    policy_file = FIXTURES / "bts-all-policy.json"
    policy_file.write_text(json.dumps({"by": "position", "cells": cells}, indent=1) + "\n")

    q_hat = cross_fitted_means(
        feedback["action"], feedback["position"], feedback["reward"], random_ds.n_actions, random_ds.len_list
    )
    ope = OffPolicyEvaluation(
        bandit_feedback=feedback,
        ope_estimators=[
            InverseProbabilityWeighting(estimator_name="ips"),
            SelfNormalizedInverseProbabilityWeighting(estimator_name="snips"),
            DoublyRobust(estimator_name="dr"),
        ],
    )
    obp_values = ope.estimate_policy_values(action_dist=action_dist, estimated_rewards_by_reg_model=q_hat)
    obp_intervals = ope.estimate_intervals(
        action_dist=action_dist,
        estimated_rewards_by_reg_model=q_hat,
        alpha=0.05,
        n_bootstrap_samples=1000,
        random_state=SEED,
    )

    # Stellwerk's Thompson from the same Beta parameters: α = 1 + rewards, β = 1 + exposures − rewards.
    alpha, beta = np.asarray(policy.alpha), np.asarray(policy.beta)
    assert (alpha >= 1).all() and (beta >= 1).all()
    arms = [str(a) for a in range(random_ds.n_actions)]
    snapshot = {
        "schema": 1,
        "version": "bts-zozotown-prior",
        "experiments": [{"key": "obd-all", "policy": {"type": "thompson"}, "arms": [{"key": a} for a in arms]}],
    }
    posteriors = {
        "version": 1,
        "updatedAt": 0,
        "experiments": {
            "obd-all": {
                "arms": {
                    a: {"exposures": int(alpha[i] + beta[i] - 2), "rewards": float(alpha[i] - 1)}
                    for i, a in enumerate(arms)
                }
            }
        },
    }
    (FIXTURES / "bts-all-snapshot.json").write_text(json.dumps(snapshot) + "\n")
    (FIXTURES / "bts-all-posteriors.json").write_text(json.dumps(posteriors) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        rows_all, rows_top = Path(tmp) / "all.ndjson", Path(tmp) / "top.ndjson"
        write_rows(rows_all, fixture)
        write_rows(rows_top, fixture, position=0)
        by_position = ["--by", "position", "--folds", str(FOLDS)]
        tool = stellwerk_ope(binary, rows_all, policy_file, *by_position)
        tool_boot = stellwerk_ope(binary, rows_all, policy_file, *by_position, "--bootstrap", "1000", "--seed", "0")
        top_obp_dist = stellwerk_ope(binary, rows_top, policy_file, "--folds", str(FOLDS))
        top_stellwerk_ts = stellwerk_ope(
            binary,
            rows_top,
            FIXTURES / "bts-all-snapshot.json",
            "--posteriors",
            str(FIXTURES / "bts-all-posteriors.json"),
            "--folds",
            str(FOLDS),
        )

    truth = on_policy(bts_feedback["reward"])
    truth_top = on_policy(bts_feedback["reward"][bts_feedback["position"] == 0])
    expected = {
        "source": "Open Bandit Dataset sample in obp 0.5.7's sdist (ZOZOTOWN, CC BY 4.0): random logs, campaign all",
        "rows": int(feedback["n_rounds"]),
        "obp": {name: float(v) for name, v in obp_values.items()},
        "obpBootstrap95": {
            name: [float(i["95.0% CI (lower)"]), float(i["95.0% CI (upper)"])] for name, i in obp_intervals.items()
        },
        "onPolicyRandom": on_policy(feedback["reward"]),
        "onPolicyBts": truth,
        "onPolicyBtsPosition0": truth_top,
        "stellwerk": {k: tool[k] for k in ["onPolicy", "ips", "snips", "dr", "diagnostics"]},
        "stellwerkBootstrap": {k: tool_boot[k] for k in ["ips", "snips", "dr"]},
        "position0": {"obpDistribution": top_obp_dist, "stellwerkThompson": top_stellwerk_ts},
    }
    (FIXTURES / "obp-expected.json").write_text(json.dumps(expected, indent=1) + "\n")

    print(f"rows: {expected['rows']} random-policy rows, all three positions")
    print(f"ground truth (BTS logs, on-policy): {truth['value']:.6f} ± {1.96 * truth['stdError']:.6f}")
    print("| estimator | obp | stellwerk | |difference| | stellwerk 95% normal CI | contains truth | stellwerk 95% bootstrap CI | obp 95% bootstrap CI |")
    print("|---|---|---|---|---|---|---|---|")
    for name in ["ips", "snips", "dr"]:
        ours, boot = tool[name], tool_boot[name]
        low, high = expected["obpBootstrap95"][name]
        print(
            f"| {name.upper()} | {obp_values[name]:.9f} | {ours['value']:.9f} | {abs(ours['value'] - obp_values[name]):.1e} "
            f"| [{ours['low']:.6f}, {ours['high']:.6f}] | {ours['low'] <= truth['value'] <= ours['high']} "
            f"| [{boot['low']:.6f}, {boot['high']:.6f}] | [{low:.6f}, {high:.6f}] |"
        )
    d = tool["diagnostics"]
    print(f"diagnostics: ESS {d['effectiveSampleSize']:.1f}, max weight {d['maxWeight']:.3f}, mean weight {d['meanWeight']:.4f}")
    print(f"position 0: truth {truth_top['value']:.6f} ± {1.96 * truth_top['stdError']:.6f}")
    for label, report in [("obp's BTS distribution", top_obp_dist), ("Stellwerk's Thompson", top_stellwerk_ts)]:
        cells = ", ".join(
            f"{n.upper()} {report[n]['value']:.6f} [{report[n]['low']:.6f}, {report[n]['high']:.6f}]" for n in ["ips", "snips", "dr"]
        )
        print(f"  {label}: {cells}; ESS {report['diagnostics']['effectiveSampleSize']:.1f}")


if __name__ == "__main__":
    main()
