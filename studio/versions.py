"""Model versions of a film: list them with their metrics, activate one (roll back or forward).

The Training page and the CLI call these; activating never deletes anything, and predictions made
by each version are kept, so rolling back shows that version's proposals again at once.
"""

from __future__ import annotations

from sqlalchemy import or_, select

from db.models import Film, ModelVersion
from db.store import Store


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
