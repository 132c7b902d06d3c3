"""Shared fixtures: one real local Ray runtime per test session, and isolated stores."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("RAY_ADDRESS", None)
# One migrated MLflow store template per session (tuner/tracking/sqlite_template.py), not
# the user's cache: subprocesses inherit it.
if "GREENTUNE_CACHE_DIR" not in os.environ:
    os.environ["GREENTUNE_CACHE_DIR"] = tempfile.mkdtemp(prefix="greentune-cache-")
    atexit.register(shutil.rmtree, os.environ["GREENTUNE_CACHE_DIR"], True)


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray, started once: ``ray.init`` costs seconds."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()
