"""Pins `stellwerk ope` on the committed Open Bandit Dataset fixture against obp's figures.

Standard library only, no network: converts `fixtures/obd-random-all.csv.gz` (10,000 rows of the
OBD sample, CC BY 4.0) to training rows, runs the given `stellwerk` binary with the Bernoulli TS
distribution obp computed (`fixtures/bts-all-policy.json`), and checks that

- IPS, SNIPS and DR equal obp's values in `fixtures/obp-expected.json` (written by
  compare_obp.py) to floating-point tolerance, with the same cross-fitted q̂;
- the on-policy value of the Bernoulli TS logs lies inside each of the tool's 95% intervals;
- on position 0 alone, Stellwerk's own Thompson sampling from the same Beta parameters (P(best)
  from 4,000 draws) gives the estimates obp's distribution (100,000 draws) gives, to within a
  fifth of a standard error, and each differs from the position-0 on-policy value of the BTS
  logs by less than 1.96 standard errors of the difference (on ~3,300 rows the BTS sample's own
  mean is as uncertain as the estimate, so the interval alone is not the test there).

Usage: python3 models/ope/check_fixture.py target/debug/stellwerk
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
sys.path.insert(0, str(HERE))
from obd_rows import training_rows  # noqa: E402

# Sums of 10,000 terms: obp (numpy, pairwise summation) and the tool (sequential) differ in
# the last bits only.
RELATIVE_TOLERANCE = 1e-9


def run(binary, rows, policy, *extra):
    command = [binary, "ope", "--logs", rows, "--policy", str(policy), "--json", *extra]
    return json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)


def main():
    binary = sys.argv[1]
    expected = json.loads((FIXTURES / "obp-expected.json").read_text())
    checks = []

    def check(name, ok, detail):
        checks.append(ok)
        print(f"{'ok' if ok else 'FAIL'}: {name}: {detail}")

    with tempfile.TemporaryDirectory() as tmp:
        rows, top = f"{tmp}/all.ndjson", f"{tmp}/top.ndjson"
        for path, position in [(rows, None), (top, 0)]:
            with open(path, "w") as f:
                for row in training_rows(str(FIXTURES / "obd-random-all.csv.gz"), position):
                    f.write(json.dumps(row) + "\n")
        report = run(binary, rows, FIXTURES / "bts-all-policy.json", "--by", "position", "--folds", "5")
        top_obp = run(binary, top, FIXTURES / "bts-all-policy.json")
        thompson = run(
            binary,
            top,
            FIXTURES / "bts-all-snapshot.json",
            "--posteriors",
            str(FIXTURES / "bts-all-posteriors.json"),
        )

    check("rows", report["diagnostics"]["rows"] == expected["rows"], report["diagnostics"]["rows"])
    truth = expected["onPolicyBts"]["value"]
    for name in ["ips", "snips", "dr"]:
        ours, theirs = report[name]["value"], expected["obp"][name]
        check(f"{name} equals obp", abs(ours - theirs) <= RELATIVE_TOLERANCE * abs(theirs), f"{ours!r} vs {theirs!r}")
        low, high = report[name]["low"], report[name]["high"]
        check(f"{name} interval holds the BTS on-policy value", low <= truth <= high, f"{truth} in [{low}, {high}]")
    random_value = report["onPolicy"]["value"]
    check("on-policy value of the random logs", random_value == expected["onPolicyRandom"]["value"], random_value)
    truth_top = expected["onPolicyBtsPosition0"]
    for name in ["ips", "snips", "dr"]:
        ours, theirs = thompson[name], top_obp[name]
        gap = abs(ours["value"] - theirs["value"])
        check(f"Stellwerk Thompson {name} matches obp's distribution", gap < 0.2 * theirs["stdError"], f"{gap:.2e}")
        z = abs(ours["value"] - truth_top["value"]) / (ours["stdError"] ** 2 + truth_top["stdError"] ** 2) ** 0.5
        check(f"Stellwerk Thompson {name} agrees with the position-0 value", z < 1.96, f"z = {z:.2f}")

    failed = checks.count(False)
    print(f"{len(checks) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
