"""A new study's SQLite store is copied from a migrated template, and is a store MLflow accepts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tuner.tracking import sqlite_template
from tuner.tracking.sqlite_template import prepare_store, sqlite_path


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(sqlite_template.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_sqlite_path_reads_only_sqlite_uris(tmp_path):
    assert sqlite_path(f"sqlite:///{tmp_path}/m.db") == tmp_path / "m.db"
    assert sqlite_path(f"sqlite:///{tmp_path}/m.db?timeout=5") == tmp_path / "m.db"
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert sqlite_path(f"file://{tmp_path}/mlruns") is None


def test_a_new_store_is_a_copy_mlflow_opens_with_its_default_experiment_here(cache, tmp_path):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/study/mlflow.db"
    assert prepare_store(uri)
    templates = list(cache.glob("mlflow-*-schema.db"))
    assert len(templates) == 1 and not list(cache.glob("*.tmp"))
    with sqlite3.connect(templates[0]) as db:  # the template holds the schema, no experiment
        assert db.execute("select count(*) from experiments").fetchone() == (0,)
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("copied")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "energy_kwh", 1.5)
    assert client.get_run(run.info.run_id).data.metrics == {"energy_kwh": 1.5}
    assert {e.name for e in client.search_experiments()} == {"copied", "Default"}
    assert not list((tmp_path / "study").glob("*.tmp"))


def test_an_existing_store_is_never_replaced(cache, tmp_path):
    store = tmp_path / "mlflow.db"
    store.write_bytes(b"kept")
    assert not prepare_store(f"sqlite:///{store}")
    assert store.read_bytes() == b"kept"


def test_an_unwritable_cache_falls_back_to_mlflows_own_migrations(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would be")
    monkeypatch.setenv(sqlite_template.CACHE_ENV, str(blocker / "cache"))
    assert not prepare_store(f"sqlite:///{tmp_path}/study/mlflow.db")
    assert not (tmp_path / "study" / "mlflow.db").exists()
