"""The correlnet library never imports the store, the use cases, the web app, streamlit or SQLAlchemy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, json, pkgutil, sys
import correlnet
names = [m.name for m in pkgutil.walk_packages(correlnet.__path__, "correlnet.")]
for name in names:
    importlib.import_module(name)
forbidden = ("streamlit", "sqlalchemy", "db", "studio", "webapp")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({"imported": names, "leaked": leaked}))
"""


def test_correlnet_imports_no_app_layers():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Guard against a vacuous pass: the walk must have found the real modules.
    assert {"correlnet.models.efficient", "correlnet.checkpoint", "correlnet.losses"} <= set(result["imported"])
    assert result["leaked"] == [], f"correlnet pulled in {result['leaked']}"


DB_SCRIPT = """
import importlib, json, pkgutil, sys
import db
names = [m.name for m in pkgutil.walk_packages(db.__path__, "db.") if ".migrations" not in m.name]
for name in names:
    importlib.import_module(name)
forbidden = ("torch", "timm", "streamlit", "studio", "webapp")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({"imported": names, "leaked": leaked}))
"""


def test_store_imports_no_torch_and_no_upper_layers():
    out = subprocess.run([sys.executable, "-c", DB_SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"db.models", "db.store", "db.files", "db.engine"} <= set(result["imported"])
    assert result["leaked"] == [], f"db pulled in {result['leaked']}"
