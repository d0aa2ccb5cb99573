#!/usr/bin/env bash
# Re-runs the obp comparison behind REPORT.md: makes models/ope/.venv (Python 3.11, pinned
# requirements; obp 0.5.7 from its sdist, which declares Python < 3.11 and torch 1.12 — it is
# installed without its dependency list, see compare_obp.py for torch), builds the CLI, and
# regenerates fixtures/ and the figures.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
python="${PYTHON:-python3.11}"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
if ! "$venv/bin/pip" show obp 2>/dev/null | grep -q '^Version: 0.5.7$'; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --ignore-requires-python \
    --no-binary obp obp==0.5.7
fi
(cd "$root" && cargo build -q -p stellwerk-cli)
"$venv/bin/python" "$here/compare_obp.py" "$root/target/debug/stellwerk"
python3 "$here/check_fixture.py" "$root/target/debug/stellwerk"
