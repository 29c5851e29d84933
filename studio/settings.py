"""Application settings, read from CORRELNET_* environment variables by the entry points
(CLI, worker, web app) - never at import time."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping


@dataclass(frozen=True)
class Settings:
    """data_dir: where the SQLite store, frames, masks and model files live.
    db_url: SQLAlchemy URL; defaults to SQLite at data_dir/studio.db.
    import_root: the only directory tree the web app may import films from by path.
    device: "auto", "cpu" or "cuda[:N]" (resolved once by correlnet.device.resolve_device).
    default_model: checkpoint used for a film that has no model version of its own yet;
        None means the shipped default (correlnet.default_model.default_model_path()).
    retrain_after: queue fine-tuning automatically after this many new edited corrections (frames accepted
        as is do not count; 0 = never).
    """

    data_dir: Path = Path("data")
    db_url: str | None = None
    import_root: Path | None = None
    device: str = "auto"
    default_model: Path | None = None
    retrain_after: int = 5

    @property
    def resolved_db_url(self) -> str:
        from db.engine import store_url

        return store_url(self.data_dir, self.db_url)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("CORRELNET_DATA_DIR", "data")).expanduser()
        root = env.get("CORRELNET_IMPORT_ROOT")
        model = env.get("CORRELNET_DEFAULT_MODEL")
        try:
            retrain_after = int(env.get("CORRELNET_RETRAIN_AFTER", "5"))
        except ValueError as exc:
            raise ValueError(f"CORRELNET_RETRAIN_AFTER must be a whole number, got {env['CORRELNET_RETRAIN_AFTER']!r}") from exc
        return cls(
            data_dir=data_dir,
            db_url=env.get("CORRELNET_DB_URL") or None,
            import_root=Path(root).expanduser().resolve() if root else data_dir.resolve() / "imports",
            device=env.get("CORRELNET_DEVICE", "auto"),
            default_model=Path(model).expanduser() if model else None,
            retrain_after=retrain_after,
        )
