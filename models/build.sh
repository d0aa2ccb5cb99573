#!/usr/bin/env bash
# Creates models/.venv with the pinned requirements (once) and retrains every model.
# Usage: models/build.sh            (PYTHON=python3.11 to pick the interpreter)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python="${PYTHON:-python3.11}"
venv="$here/.venv"

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# pip skips what is already installed at the pinned version, so this is cheap on re-runs.
"$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"

# The fraud model's labelled user agents and its isbot baseline come from npm (pinned).
if [ ! -d "$here/fraud/node_modules" ]; then
  npm ci --prefix "$here/fraud" --no-audit --no-fund
fi

for trainer in "$here"/*/train.py; do
  echo "== ${trainer#"$here"/}"
  "$venv/bin/python" "$trainer"
done

echo "== ops/make_cases.py"
"$venv/bin/python" "$here/ops/make_cases.py"
