"""Open Bandit Dataset rows → Stellwerk training rows (NDJSON), standard library only.

Reads the compact fixture `fixtures/obd-<policy>-<campaign>.csv.gz` (columns ts_ms, item_id,
position, click, propensity_score; rows in the order obp's OpenBanditDataset loads them) and
writes one training row per line, in the format the aggregator writes:

  {"decision", "ts", "experiment", "context": {"position": 0|1|2}, "arms": ["0", ..., "79"],
   "arm", "propensity", "reward", "policy", "snapshot", "model": null}

Positions: ZOZOTOWN shows three items per impression; each logged row is one (item, position)
slot with that slot's propensity. The position (0-based, as obp numbers it) goes into the
context, so a candidate can be evaluated per position (`"by": "position"`) or on one position
(`--position 0`).

Usage: python3 obd_rows.py FIXTURE.csv.gz [--position N] > rows.ndjson
"""

import argparse
import csv
import gzip
import json
import sys

N_ACTIONS = {"all": 80, "men": 34, "women": 46}


def training_rows(path, position=None):
    """Yields training rows (dicts) from a compact OBD fixture."""
    name = path.rsplit("/", 1)[-1]
    _, policy, campaign = name.split(".")[0].split("-")
    arms = [str(i) for i in range(N_ACTIONS[campaign])]
    with gzip.open(path, "rt", newline="") as f:
        for i, record in enumerate(csv.DictReader(f)):
            slot = int(record["position"])
            if position is not None and slot != position:
                continue
            yield {
                "decision": f"obd-{policy}-{campaign}-{i}",
                "ts": int(record["ts_ms"]),
                "experiment": f"obd-{campaign}",
                "context": {"position": slot},
                "arms": arms,
                "arm": record["item_id"],
                "propensity": float(record["propensity_score"]),
                "reward": float(record["click"]),
                "policy": policy,
                "snapshot": "zozotown-2019-11",
                "model": None,
            }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fixture")
    parser.add_argument("--position", type=int, help="keep only this position's rows")
    args = parser.parse_args()
    for row in training_rows(args.fixture, args.position):
        sys.stdout.write(json.dumps(row, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
