"""Model versions (the one home): register a checkpoint, the film's active version, pin it, load it
(checked against its sha256), publish a fine-tuned one, list them, activate one (roll back or forward).

Detection, fine-tuning, the worker, the CLI and the Training page call these; activating never deletes
anything, and predictions made by each version are kept, so rolling back shows that version's proposals
again at once. torch is imported only inside the functions that read or write checkpoints, so the web
app imports this module cheaply.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import or_, select

from db.files import sha256_file
from db.models import Film, ModelVersion
from db.store import Store
from studio.jobs import owned_job


def list_model_versions(store: Store, film_id: int) -> list[ModelVersion]:
    """The film's own versions plus the global (shipped) ones, oldest first."""
    with store.session() as s:
        return list(s.execute(select(ModelVersion).where(
            or_(ModelVersion.film_id == film_id, ModelVersion.film_id.is_(None))).order_by(ModelVersion.id)).scalars())


def activate_model_version(store: Store, film_id: int, version_id: int) -> Film:
    """Make `version_id` the film's active model. Raises LookupError for an unknown film or version,
    ValueError for another film's version."""
    with store.write() as s:
        film = s.get(Film, film_id)
        version = s.get(ModelVersion, version_id)
        if film is None or version is None:
            raise LookupError(f"no film {film_id} or no model version {version_id}; see the Training page's list")
        if version.film_id not in (None, film_id):
            raise ValueError(f"model version {version_id} was trained for film {version.film_id}, not {film_id}")
        film.active_model_version_id = version_id
        return film


def register_model_version(store: Store, path: str | Path, *, film_id: int | None = None,
                           parent_id: int | None = None, note: str = "") -> ModelVersion:
    """Register an existing checkpoint file as a ModelVersion (global when film_id is None); returns the
    existing row when a version with the same film and file content is already registered."""
    from correlnet.checkpoint import load_checkpoint_meta

    path = Path(path).expanduser().resolve()
    sha = sha256_file(path)
    meta = load_checkpoint_meta(path)
    with store.write() as s:
        found = s.execute(select(ModelVersion).where(
            ModelVersion.sha256 == sha,
            ModelVersion.film_id.is_(None) if film_id is None else ModelVersion.film_id == film_id,
        ).order_by(ModelVersion.id)).scalars().first()
        if found is not None:
            return found
        try:
            stored = str(path.relative_to(store.data_dir))
        except ValueError:
            stored = str(path)  # outside data_dir (e.g. the shipped model): kept absolute
        version = ModelVersion(film_id=film_id, parent_id=parent_id, path=stored, sha256=sha,
                               arch=str(meta.get("arch", "")), encoder=meta.get("encoder"),
                               config=dict(meta.get("model_config") or {}), metrics=dict(meta.get("metrics") or {}),
                               note=note)
        s.add(version)
        s.flush()
        return version


def active_model_version(store: Store, film: Film, default_path: str | Path | None = None) -> ModelVersion:
    """The film's active model version; for a film with none yet, the global version of `default_path`
    (default: the shipped correlnet/weights/default.pt), registered on first use."""
    with store.session() as s:
        current = s.get(Film, film.id)
        if current is not None and current.active_model_version_id is not None:
            return s.get(ModelVersion, current.active_model_version_id)
    if default_path is None:
        from correlnet.default_model import default_model_path

        default_path = default_model_path()
    return register_model_version(store, default_path, note="shipped default model")


def load_version_model(store: Store, version: ModelVersion, device: Any = "cpu") -> Any:
    """The model of `version` (nn.Module on `device`), after checking its file still has the sha256 it
    was registered with. Raises ValueError naming the file when it changed, FileNotFoundError when gone."""
    from correlnet.checkpoint import load_model

    path = store.path(version.path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the file of model version {version.id} is missing; restore it from a backup "
                                "or activate another version on the Training page")
    if sha256_file(path) != version.sha256:
        raise ValueError(f"{path}: the file of model version {version.id} changed since it was registered "
                         "(checksum mismatch); restore it from a backup, or register the new file as a new version "
                         "(`correlnet film detect FILM --model FILE`)")
    return load_model(path, device=device)


def pin_model_version(store: Store, film: Film, version: ModelVersion | None = None,
                      default_model: str | Path | None = None) -> ModelVersion:
    """The version a film's detection predicts with: `version`, else the film's active model; a film
    with none is pinned (activated) to it first, so a newer shipped default (a package upgrade) never
    silently becomes the parent of its fine-tuning. A split detection pins it once for all its chunks."""
    if version is None:
        version = active_model_version(store, film, default_model)
        with store.session() as s:
            unpinned = s.get(Film, film.id).active_model_version_id is None
        if unpinned:
            activate_model_version(store, film.id, version.id)
    return version


def publish_version(store: Store, film: Film, parent: ModelVersion, model: Any, metrics: dict[str, Any],
                    finetune_config: dict[str, Any], job_id: int, worker_id: str | None = None) -> ModelVersion:
    """Write the checkpoint atomically, then (only then) insert its ModelVersion and make it active.
    worker_id: the worker running job `job_id`; the insert checks in its own transaction that the job is
    still running there (`studio.jobs.owned_job`) and raises JobError, publishing nothing and removing
    the checkpoint, when another worker took the job over meanwhile. model: the trained nn.Module."""
    from correlnet.checkpoint import save_checkpoint

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    relative = f"models/film_{film.id}/finetune_job{job_id}_{stamp}.pt"
    path = store.path(relative)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, metrics=metrics, train_config=finetune_config,
                    extra={"film_id": film.id, "parent_model_version_id": parent.id, "job_id": job_id})
    cfg = getattr(model, "config", None)
    try:
        with store.write() as s:
            if worker_id is not None:
                owned_job(s, job_id, worker_id)  # locked: no other worker takes the job before we commit
            version = ModelVersion(film_id=film.id, parent_id=parent.id, path=relative, sha256=sha256_file(path),
                                   arch=parent.arch, encoder=parent.encoder,
                                   config=asdict(cfg) if cfg is not None else dict(parent.config or {}),
                                   metrics=metrics, note=f"fine-tuned by job {job_id}")
            s.add(version)
            s.flush()
            s.get(Film, film.id).active_model_version_id = version.id
            return version
    except BaseException:
        path.unlink(missing_ok=True)  # no row points to it
        raise
