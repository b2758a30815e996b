#!/usr/bin/env bash
# Creates (or updates) the Python venv in .venv/ from scripts/python-requirements.txt.
# A second run is fast: it reinstalls only when the requirements file changed.
set -euo pipefail
cd "$(dirname "$0")/.."
req=scripts/python-requirements.txt
stamp=.venv/.requirements.sha256
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
printf '\033[1m==> preparing the Python venv (.venv)\033[0m\n'
python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check --upgrade pip
.venv/bin/pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
