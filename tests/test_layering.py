"""Layers point one way: the correlnet library never imports the store, the use cases, the web app,
streamlit or SQLAlchemy; the store (db) never imports torch, the use cases or the web app."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import importlib, json, pkgutil, sys
package, forbidden, skip = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
root = importlib.import_module(package)
names = [m.name for m in pkgutil.walk_packages(root.__path__, package + ".") if not (skip and skip in m.name)]
for name in names:
    importlib.import_module(name)
leaked = sorted(m for m in sys.modules if m.split(".")[0] in forbidden)
print(json.dumps({"imported": names, "leaked": leaked}))
"""


def import_all(package: str, forbidden: tuple[str, ...], skip: str = "") -> dict:
    """Import every module of `package` in a fresh interpreter; report what got imported and leaked."""
    out = subprocess.run([sys.executable, "-c", SCRIPT, package, ",".join(forbidden), skip],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_correlnet_imports_no_app_layers():
    result = import_all("correlnet", ("streamlit", "sqlalchemy", "db", "studio", "webapp"))
    # Guard against a vacuous pass: the walk must have found the real modules.
    assert {"correlnet.models.efficient", "correlnet.checkpoint", "correlnet.losses"} <= set(result["imported"])
    assert result["leaked"] == [], f"correlnet pulled in {result['leaked']}"


def test_store_imports_no_torch_and_no_upper_layers():
    # db.migrations.env runs only inside Alembic (it executes migrations when imported).
    result = import_all("db", ("torch", "timm", "streamlit", "studio", "webapp"), skip=".migrations")
    assert {"db.models", "db.store", "db.files", "db.engine"} <= set(result["imported"])
    assert result["leaked"] == [], f"db pulled in {result['leaked']}"
