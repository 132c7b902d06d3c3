"""A new study's SQLite MLflow store, copied from an empty one migrated once per MLflow version.

MLflow builds a new SQLite store by running its whole chain of Alembic migrations, which
imports every migration script: seconds of CPU at every study's start, for a schema that
is the same each time. The first study migrates an empty store into the user's cache;
every later one copies it. The copy holds only the schema (no experiment), so MLflow still
creates its ``Default`` experiment where the new store lives, as it does for a fresh file.

Any failure here (a read-only cache, a private MLflow API that moved) falls back to
MLflow's own path: the study starts as it always did, a few seconds later.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV = "GREENTUNE_CACHE_DIR"
"""Where the migrated template lives; default ``$XDG_CACHE_HOME/greentune`` or ``~/.cache/greentune``."""


def cache_dir() -> Path:
    """The user's greentune cache folder (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "greentune"


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI; ``None`` for any other store."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    path = tracking_uri[len(prefix):].split("?", 1)[0]
    return Path(path if path.startswith("/") else "/" + path) if path else None


def prepare_store(tracking_uri: str) -> bool:
    """Give a not-yet-existing SQLite store its schema by copy; ``True`` if it was copied."""
    target = sqlite_path(tracking_uri)
    if target is None or target.exists():
        return False
    try:
        template = _template()
        target.parent.mkdir(parents=True, exist_ok=True)
        _copy_atomically(template, target)
        return True
    except Exception as err:  # noqa: BLE001 - any failure leaves MLflow's own path
        logger.debug("MLflow store template unavailable (%s); MLflow migrates %s itself", err, target)
        return False


def _template() -> Path:
    """The migrated empty store for this MLflow version, built on first use."""
    import mlflow

    path = cache_dir() / f"mlflow-{mlflow.__version__}-schema.db"
    if path.exists():
        return path
    import sqlalchemy
    from mlflow.store.db.utils import _initialize_tables, _verify_schema

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, building = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(handle)
    os.unlink(building)  # SQLite makes its own file
    engine = sqlalchemy.create_engine(f"sqlite:///{building}")
    try:
        _initialize_tables(engine)
        _verify_schema(engine)  # a template that is not at MLflow's head is never kept
        engine.dispose()
        os.replace(building, path)  # atomic: a concurrent study sees no half-built template
    finally:
        engine.dispose()
        Path(building).unlink(missing_ok=True)
    return path


def _copy_atomically(source: Path, target: Path) -> None:
    """Copy, then link into place: a store another process created meanwhile is never replaced."""
    handle, partial = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        shutil.copyfile(source, partial)
        os.link(partial, target)  # FileExistsError if the store appeared: MLflow opens that one
    finally:
        Path(partial).unlink(missing_ok=True)
