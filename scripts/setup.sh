#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs the project with its test tools.
# torch and torchvision are installed first as a matched pair, so that timm and
# segmentation-models-pytorch do not pull in another torch build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
VPIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch, torchvision" >/dev/null 2>&1; then
    echo "[setup] installing torch==2.14.1 torchvision==0.29.1 (large, once)"
    $VPIP install -q "torch==2.14.1" "torchvision==0.29.1"
fi
stamp=.venv/.correlnet-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "[setup] installing correlnet-studio and its dependencies"
    $VPIP install -q -e ".[test]"
    touch "$stamp"
fi
