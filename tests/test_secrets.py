"""Secrets stay secret: carbon tokens and MLflow credentials never reach logs, MLflow
params and tags, study files, reports or error messages.

The end-to-end test runs a real study against a real ``mlflow server`` reached through
``http://user:secret@127.0.0.1:PORT`` and a real Electricity Maps-like server that needs
a token, then searches every byte written for the secrets.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tuner
from tests import objectives_for_tests as objs
from tests.carbon_servers import EM_TOKEN, WT_PASSWORD, serve
from tests.local_cluster import MlflowServer
from tuner.energy import Measurement
from tuner.redact import (
    MASK,
    RedactingFilter,
    has_credentials,
    install_log_redaction,
    redact,
    redact_obj,
    secret_values,
)
from tuner.trial import _final_record

ROOT = Path(__file__).resolve().parents[1]
URI_SECRET = "uri-pw-Zq81x"
MLFLOW_PASSWORD = "mlflow-pw-77Kd"
BASE_URL_SECRET = "baseurl-pw-4Tf"
SECRETS = (EM_TOKEN, WT_PASSWORD, URI_SECRET, MLFLOW_PASSWORD, BASE_URL_SECRET)


# --------------------------------------------------------------------------- units

@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://bob:pw123@127.0.0.1:5000/api", "http://***@127.0.0.1:5000/api"),
        ("postgresql+psycopg2://u:p%40ss@db:5432/mlflow", "postgresql+psycopg2://***@db:5432/mlflow"),
        ("https://tok3n@host/x", "https://***@host/x"),
        ("GET https://api.example/v1?zone=DE&token=abc123&x=1", "GET https://api.example/v1?zone=DE&token=***&x=1"),
        ("sqlite:////tmp/runs/mlflow.db", "sqlite:////tmp/runs/mlflow.db"),
        ("mail bob@example.com about it", "mail bob@example.com about it"),
        (f"auth-token: {EM_TOKEN}", f"auth-token: {MASK}"),
        (f"login {WT_PASSWORD} failed", f"login {MASK} failed"),
    ],
    ids=["userinfo", "db_uri", "token_as_user", "query_token", "sqlite", "email", "env_token", "env_password"],
)
def test_redact_masks_secrets_and_keeps_the_rest(monkeypatch, text: str, expected: str):
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", EM_TOKEN)
    monkeypatch.setenv("WATTTIME_PASSWORD", WT_PASSWORD)
    assert redact(text) == expected


def test_secret_env_names_are_guessed_and_short_values_masked_too():
    """Any length from 4 characters on (issue 23: DB_PASSWORD=hunter2 was under the old 8)."""
    env = {"HF_TOKEN": "hf_abcdefgh1234", "DB_PASSWORD": "hunter2", "MY_API_KEY": "k-98765432",
           "PGPASSWORD": "pg-pw", "GPG_KEY": "ABCD1234", "SOME_SECRET": "short", "WATTTIME_PASSWORD": "pw4!",
           "TOKENIZERS_PARALLELISM": "false", "KEYRING_BACKEND": "keyring.backends.null", "PATH": "/usr/bin",
           "FEATURE_KEY": "true", "X_TOKEN": "abc"}
    assert set(secret_values(env)) == {"hf_abcdefgh1234", "hunter2", "k-98765432", "pg-pw", "ABCD1234", "short",
                                       "pw4!"}
    assert redact("login failed: DB_PASSWORD=hunter2 (pg-pw)", env) == "login failed: DB_PASSWORD=*** (***)"
    assert redact("false /usr/bin true abc keyring.backends.null", env) == "false /usr/bin true abc keyring.backends.null"


@pytest.mark.parametrize(
    ("url", "expected"),
    [("https://api.example/v3?auth-token=abc123&zone=DE", "https://api.example/v3?auth-token=***&zone=DE"),
     ("https://h/x?zone=DE&X-Amz-Signature=f00d&y=1", "https://h/x?zone=DE&X-Amz-Signature=***&y=1"),
     ("https://h/x?refresh_token=r1&apikey=k2", "https://h/x?refresh_token=***&apikey=***"),
     ("https://h/x?zone=DE&step=1h", "https://h/x?zone=DE&step=1h")],
    ids=["auth_token", "signature", "two", "none"],
)
def test_token_like_query_parameters_are_masked(url: str, expected: str):
    assert redact(url, environ={}) == expected


def test_auth_token_in_base_url_is_masked_in_the_stored_config():
    from tuner.config import config_dump, load_config

    cfg = load_config({"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0,
                       "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                       "carbon": {"base_url": "https://mirror.example/v3?auth-token=Zx81-secret"}})
    assert config_dump(cfg)["carbon"]["base_url"] == "https://mirror.example/v3?auth-token=***"


def test_log_records_of_loggers_made_later_are_masked(monkeypatch):
    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    install_log_redaction()
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(handler.format(record))  # type: ignore[method-assign]
    later = logging.getLogger("tuner.made_after_install_xyz")  # no filter of its own
    ray_logger = logging.getLogger("ray.tune.some_module_xyz")  # Ray's loggers too
    for logger in (later, ray_logger):
        logger.addHandler(handler)
    try:
        later.warning("connecting with %s", "hunter2")
        ray_logger.error("trial failed: DB_PASSWORD=hunter2")
    finally:
        for logger in (later, ray_logger):
            logger.removeHandler(handler)
    assert seen == ["connecting with ***", "trial failed: DB_PASSWORD=***"]


def test_a_redacting_stream_masks_whole_lines_even_when_written_in_pieces(monkeypatch):
    import io

    from tuner.redact import RedactingStream

    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    sink = io.StringIO()
    stream = RedactingStream(sink)
    print("password:", "hunt", end="", file=stream)  # a secret split across writes...
    print("er2 ok", file=stream)  # ...is masked once its line is whole
    print("progress 50%", end="", file=stream, flush=True)  # a partial line goes out on flush
    assert sink.getvalue() == "password: *** ok\nprogress 50%"
    assert stream.encoding == sink.encoding  # everything else is the wrapped stream's


@pytest.mark.ray
def test_forwarded_worker_output_is_masked_in_the_driver(ray_session, monkeypatch, capfd):
    """What Ray forwards from a worker goes through its stream dispatcher: masked there."""
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    from tuner.redact import install_forwarded_output_redaction

    monkeypatch.setenv("DB_PASSWORD", "hunter2")
    assert install_forwarded_output_redaction() and install_forwarded_output_redaction()  # idempotent
    assert [name for name, _ in dispatcher.handlers].count("greentune_redact") == 1
    dispatcher.emit({"ip": "127.0.0.1", "pid": 4242, "job": "", "is_err": False, "task_name": "run_trial",
                     "lines": ["connecting as DB_PASSWORD=hunter2", "done"], "localhost": "127.0.0.1"})
    dispatcher.emit({"ip": "127.0.0.1", "pid": 4242, "job": "", "is_err": True, "task_name": "run_trial",
                     "lines": ["Traceback: bad login hunter2"], "localhost": "127.0.0.1"})
    captured = capfd.readouterr()
    assert "hunter2" not in captured.out + captured.err
    assert "DB_PASSWORD=***" in captured.out and "bad login ***" in captured.err


def test_cli_study_masks_what_the_objective_prints_logs_and_raises(tmp_path: Path):
    """A real study from the CLI with DB_PASSWORD=hunter2 in its environment: the objective
    prints it, logs it through a ``tuner.*`` logger and raises an error quoting it, and
    the carbon base_url carries ``?auth-token=``. Nothing leaves unmasked: not the CLI's
    stdout or stderr, nor any file of the study (trials.csv, ledger.json, study.json,
    report, MLflow store and artifacts, Ray's result files)."""
    token = "Tk-0a9b8c7d"
    study = tmp_path / "study.yaml"
    study.write_text(
        "objective: tests.book_objectives:leaky\nbudget_kwh: 1.0\nstrategy: grid\nseed: 0\n"
        f"carbon: {{base_url: 'https://carbon.example/v3?auth-token={token}'}}\n"
        "search_space:\n  fail: {type: choice, values: [true, false]}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "DB_PASSWORD": "hunter2"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(study), "--output-dir", "out"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "out"
    table = (out / "trials.csv").read_text()
    assert "DB_PASSWORD=***" in table  # the error is kept, masked
    assert "printed DB_PASSWORD=***" in proc.stdout + proc.stderr  # Ray forwarded the print, masked
    assert "hunter2" not in proc.stdout + proc.stderr and token not in proc.stdout + proc.stderr
    assert _files_holding(out, ("hunter2", token)) == []
    assert "auth-token=***" in (out / "study.json").read_text()


def test_redact_obj_walks_nested_values(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-abcdef")
    data = {"mlflow": {"tracking_uri": "http://u:p@h:1"}, "list": ["tok-abcdef", 3, None], "n": 1.5}
    assert redact_obj(data) == {"mlflow": {"tracking_uri": "http://***@h:1"}, "list": [MASK, 3, None], "n": 1.5}
    assert has_credentials("http://u:p@h") and not has_credentials("http://h:5000")


def test_log_filter_masks_messages_arguments_and_tracebacks(monkeypatch, caplog):
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", EM_TOKEN)
    install_log_redaction()
    child = logging.getLogger("tuner.test_secrets_child")  # created after install: needs install again
    install_log_redaction()
    assert any(isinstance(f, RedactingFilter) for f in child.filters)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("tuner").warning("token %s at %s", EM_TOKEN, "http://u:pw@h")
    try:
        raise RuntimeError(f"failed with {EM_TOKEN}")
    except RuntimeError:
        child.exception("provider failed")
    assert EM_TOKEN not in caplog.text and "pw@" not in caplog.text
    assert "token *** at http://***@h" in caplog.text and "RuntimeError: failed with ***" in caplog.text


def test_trial_error_is_masked_in_the_trial_process(monkeypatch):
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", EM_TOKEN)
    measured = Measurement(energy_kwh=1e-6, duration_s=1.0, source="cpu-time-estimate", relative_uncertainty=0.5)
    record = _final_record("raised", f"RuntimeError: bad token {EM_TOKEN}", {}, 0, measured, "accuracy")
    assert record["greentune_status"] == "failed"
    assert EM_TOKEN not in record["greentune_error"] and "bad token ***" in record["greentune_error"]


def test_cli_error_line_is_masked(tmp_path: Path):
    study = tmp_path / "study.yaml"
    study.write_text(
        "objective: tests.objectives_for_tests:quadratic\nbudget_kwh: 0.01\n"
        f"mlflow: {{tracking_uri: 'http://bob:{URI_SECRET}@127.0.0.1:1'}}\n"
        f"search_space:\n  x: {{type: float, low: 0.0, high: 1.0}}\n  {EM_TOKEN}: 3\n  x: 1\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled", "ELECTRICITYMAPS_TOKEN": EM_TOKEN}
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(study)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "duplicate key 'x'" in proc.stderr
    assert EM_TOKEN not in proc.stderr + proc.stdout


# --------------------------------------------------------------------------- a real study


def _files_holding(root: Path, secrets: tuple[str, ...]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path.relative_to(root)}: {s}" for s in secrets if s.encode() in data]
    return hits


@pytest.mark.ray
def test_no_secret_reaches_any_output_of_a_real_study(ray_session, tmp_path: Path, monkeypatch, caplog, capfd):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", EM_TOKEN)
    monkeypatch.setenv("WATTTIME_PASSWORD", WT_PASSWORD)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", MLFLOW_PASSWORD)
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    caplog.set_level(logging.INFO)
    out = tmp_path / "out"
    with MlflowServer.start(tmp_path / "server") as server, serve("electricitymaps") as (em_url, em):
        em.mode = "error"  # every carbon call fails: the fallback path logs and records errors
        uri = server.uri.replace("http://", f"http://bob:{URI_SECRET}@")
        result = tuner.tune(
            {"objective": objs.failing, "strategy": "grid", "grid_resolution": 2, "seed": 0, "name": "secrets",
             "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
             "mlflow": {"tracking_uri": uri, "experiment": "secrets"}, "output_dir": out,
             "carbon": {"provider": "electricitymaps", "zone": "DE", "retries": 0, "timeout_s": 2,
                        "policy": "flexible-start", "deadline": "1h",
                        "base_url": em_url.replace("http://", f"http://em:{BASE_URL_SECRET}@")}},
            budget_kwh=1.0,
        )
        assert sorted(result.trials["status"]) == ["completed", "failed"]
        assert any(headers.get("auth-token") == EM_TOKEN for _, headers in em.requests)  # the token was live
        client = MlflowClient(tracking_uri=server.uri)
        runs = client.search_runs([client.get_experiment_by_name("secrets").experiment_id])
        assert len(runs) == 3  # the study and two trials, on the real server
        records = json.dumps([{"params": r.data.params, "tags": r.data.tags} for r in runs])
        config_json = Path(client.download_artifacts(result.mlflow_run_id, "config.json", str(tmp_path))).read_text()
        server_files = _files_holding(tmp_path / "server", SECRETS)
    captured = capfd.readouterr()

    assert not _files_holding(out, SECRETS)  # study.json, trials.csv, report.html, Ray's files...
    assert not server_files  # MLflow's own database and artifact store
    for name, text in [("params/tags", records), ("config.json", config_json), ("logs", caplog.text),
                       ("stdout", captured.out), ("stderr", captured.err)]:
        assert not [s for s in SECRETS if s in text], name
    # masked, not dropped: the places still say where things are
    state = json.loads((out / "study.json").read_text())
    assert state["tracking_uri"] == server.uri.replace("http://", "http://***@")
    assert f"http://***@127.0.0.1:{em_url.split(':')[2]}" in state["config"]["carbon"]["base_url"]
    assert "***@" in json.loads(config_json)["mlflow"]["tracking_uri"]
    assert "http://***@127.0.0.1" in (out / "report.html").read_text()


def test_cli_traceback_of_a_real_failure_is_masked(tmp_path: Path):
    """An MLflow server that is not there: MLflow's error names the full URL, password included."""
    from tests.local_cluster import free_port

    study = tmp_path / "study.yaml"
    study.write_text(
        "objective: tests.objectives_for_tests:quadratic\nbudget_kwh: 0.0001\nmax_trials: 1\n"
        f"mlflow: {{tracking_uri: 'http://bob:{URI_SECRET}@127.0.0.1:{free_port()}'}}\n"
        "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled",
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(study), "--quiet"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert URI_SECRET not in proc.stdout + proc.stderr
    assert _files_holding(tmp_path, (URI_SECRET,)) == [f"study.yaml: {URI_SECRET}"]  # only the input
    # today the study cannot start: a traceback, masked. (An MLflow client that queues
    # records on disk while the server is down would run the study instead: still no secret.)
    if proc.returncode != 0:
        assert proc.returncode == 1
        assert "Traceback" in proc.stderr and "***@127.0.0.1" in proc.stderr
