"""Hostile and bad input: one clear error naming the field or the problem, before any energy is spent.

Config cases go through :func:`tuner.tune` from a real YAML file, so the error must come
before the study directory, the MLflow store or Ray exist. Objective cases run in a
real Ray study: every bad return fails its trial, naming the metric and the value.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import tuner
from tests import bad_objectives
from tuner import trial as trial_module
from tuner.config import ConfigError, GridSizeWarning, load_config
from tuner.energy import Measurement
from tuner.study.ledger import EnergyLedger
from tuner.trial import _final_record

ROOT = Path(__file__).resolve().parents[1]
OBJ = "objective: tests.objectives_for_tests:quadratic\n"
SPACE = "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n"
GOOD = OBJ + "budget_kwh: 0.01\n" + SPACE
TINY = OBJ + "budget_kwh: 1.0e-9\nmax_trials: 1\n"  # should a case ever be accepted, it spends almost nothing

# (case id, YAML text, regex the one error must match)
CONFIG_CASES = [
    ("malformed_yaml", OBJ + "budget_kwh: [0.01\n" + SPACE, r"not valid YAML at line \d+, column \d+"),
    ("bad_indentation", OBJ + "budget_kwh: 0.01\n  metric: acc\n" + SPACE, r"not valid YAML at line 3"),
    ("duplicate_key", GOOD + "budget_kwh: 5\n", r"duplicate key 'budget_kwh' at line 5 \(first at line 2\)"),
    ("duplicate_parameter", GOOD + "  x: {type: int, low: 0, high: 9}\n",
     r"duplicate key 'x' at line 5 \(first at line 4\)"),
    ("unsafe_yaml_tag", "objective: !!python/object/apply:os.system [echo pwned]\n" + SPACE,
     r"not valid YAML at line 1.*python/object/apply"),
    ("not_a_mapping", "- a\n- b\n", r"must hold a mapping"),
    ("unknown_key", GOOD + "max_trails: 3\n", r"unknown key 'max_trails'; did you mean 'max_trials'"),
    ("unknown_nested_key", OBJ + "budget_kwh: 1\nsearch_space:\n  x: {type: float, low: 0, hi: 1}\n",
     r"search_space\.x.*unknown key 'hi'"),
    # a misspelt spec key must not turn the spec into a fixed mapping every trial chokes on
    ("misspelt_type_key", TINY + "search_space:\n  n: {type: int, low: 1, high: 9}\n"
     "  lr: {tpye: float, low: 0.001, high: 0.1}\n",
     r"search_space\.lr: unknown key 'tpye'; did you mean 'type'\? .*\{type: fixed, value: \.\.\.\}"),
    ("misspelt_type_value", TINY + "search_space:\n  lr: {type: flaot, low: 0.001, high: 0.1}\n",
     r"search_space\.lr: type 'flaot' is not a parameter type; did you mean 'float'\?"),
    ("spec_without_type", TINY + "search_space:\n  x: {low: 0.0, high: 1.0}\n",
     r"search_space\.x: a parameter spec needs 'type'"),
    ("mapping_without_type", TINY + SPACE + "  net: {hidden: 64, layers: 2}\n",
     r"search_space\.net: a parameter spec needs 'type'.*\{type: fixed, value: \.\.\.\}"),
    ("wrong_type_budget", OBJ + "budget_kwh: lots\n" + SPACE, r"budget_kwh: Input should be a valid number"),
    ("wrong_type_max_trials", GOOD + "max_trials: 2.5\n", r"max_trials: .*integer"),
    ("wrong_type_search_space", OBJ + "budget_kwh: 1\nsearch_space: [x, y]\n", r"search_space: .*non-empty mapping"),
    ("wrong_type_log", OBJ + "budget_kwh: 1\nsearch_space:\n  x: {type: float, low: 1, high: 2, log: [1]}\n",
     r"search_space\.x\.log"),
    ("empty_search_space", OBJ + "budget_kwh: 1\nsearch_space: {}\n", r"search_space: .*non-empty"),
    ("only_fixed_values", OBJ + "budget_kwh: 1\nsearch_space: {x: 3}\n", r"only fixed values"),
    ("low_equals_high", OBJ + "budget_kwh: 1\nsearch_space:\n  x: {type: float, low: 1, high: 1}\n",
     r"search_space\.x: low \(1\.0\) must be less than high \(1\.0\)"),
    ("low_above_high_int", OBJ + "budget_kwh: 1\nsearch_space:\n  n: {type: int, low: 9, high: 2}\n",
     r"search_space\.n: low \(9\) must be less than high"),
    ("log_low_zero", OBJ + "budget_kwh: 1\nsearch_space:\n  lr: {type: float, low: 0, high: 1, log: true}\n",
     r"search_space\.lr: a log-scale range needs low > 0, got 0"),
    ("log_low_negative_int", OBJ + "budget_kwh: 1\nsearch_space:\n  n: {type: int, low: -4, high: 8, log: true}\n",
     r"search_space\.n: a log-scale range needs low > 0, got -4"),
    ("nan_bound", OBJ + "budget_kwh: 1\nsearch_space:\n  x: {type: float, low: .nan, high: 1}\n",
     r"search_space\.x\.low: .*finite"),
    ("nan_choice", OBJ + "budget_kwh: 1\nsearch_space:\n  x: {type: choice, values: [1.0, .nan]}\n",
     r"search_space\.x\.values"),
    ("import_module_missing", "objective: no_such_module_xyz:f\nbudget_kwh: 1\n" + SPACE,
     r"objective: objective module 'no_such_module_xyz' cannot be imported"),
    ("import_function_missing", "objective: tests.objectives_for_tests:nope\nbudget_kwh: 1\n" + SPACE,
     r"objective: .*has no 'nope'"),
    ("import_path_malformed", "objective: just_a_name\nbudget_kwh: 1\n" + SPACE, r"must look like 'module:function'"),
    ("budget_zero", OBJ + "budget_kwh: 0\n" + SPACE, r"budget_kwh must be a positive number of kWh, got 0"),
    ("budget_negative", OBJ + "budget_kwh: -1\n" + SPACE, r"budget_kwh must be a positive number of kWh, got -1"),
    ("budget_nan", OBJ + "budget_kwh: .nan\n" + SPACE, r"budget_kwh: .*finite"),
    ("budget_inf", OBJ + "budget_kwh: .inf\n" + SPACE, r"budget_kwh: .*finite"),
    ("pue_negative", GOOD + "pue: -1.2\n", r"pue: pue must be >= 1 .*got -1\.2"),
    ("pue_below_one", GOOD + "pue: 0.8\n", r"pue: pue must be >= 1 .*got 0\.8"),
    ("pue_inf", GOOD + "pue: .inf\n", r"pue: .*finite"),
    ("negative_watts", GOOD + "energy: {watts_per_core: -5}\n", r"energy\.watts_per_core"),
    ("deadline_past", GOOD + "carbon: {deadline: -2h}\n", r"carbon\.deadline: .*positive duration.*already past"),
    ("deadline_zero", GOOD + "carbon: {deadline: 0h}\n", r"carbon\.deadline: .*positive duration"),
    ("deadline_timestamp", GOOD + "carbon: {deadline: '2020-01-01T00:00:00'}\n",
     r"carbon\.deadline: '2020-01-01T00:00:00' is a timestamp; give a duration"),
    ("name_path_traversal", GOOD + "name: ../../etc\n", r"name: name may hold letters, digits"),
    ("name_with_slash", GOOD + "name: runs/evil\n", r"name: name may hold letters, digits"),
    ("name_absolute", GOOD + "name: /etc/passwd\n", r"name: name may hold letters, digits"),
    ("huge_grid", OBJ + "budget_kwh: 1\nstrategy: grid\ngrid_resolution: 50\nsearch_space:\n"
     + "".join(f"  p{i}: {{type: float, low: 0, high: 1}}\n" for i in range(5)),
     r"strategy grid: 3\.12e\+08 grid points cannot be enumerated"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config_fails_before_anything_runs(tmp_path: Path, text: str, message: str):
    study = tmp_path / "study.yaml"
    study.write_text(text)
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message) as err:
        tuner.tune(study, output_dir=out, progress=False)
    assert "\n" not in str(err.value)  # one line, fit for a terminal or a CI log
    assert not out.exists()  # no study directory, no MLflow store: nothing was spent


def test_duplicate_key_names_nested_section_too(tmp_path: Path):
    study = tmp_path / "study.yaml"
    study.write_text(GOOD + "energy:\n  report_interval_s: 1\n  report_interval_s: 2\n")
    with pytest.raises(ConfigError, match="duplicate key 'report_interval_s' at line 7"):
        load_config(study)


def test_yaml_anchors_and_merges_still_load(tmp_path: Path):
    """The duplicate-key check must not break legitimate YAML features."""
    study = tmp_path / "study.yaml"
    study.write_text(OBJ + "budget_kwh: 0.01\nsearch_space:\n  x: &r {type: float, low: 0.0, high: 1.0}\n"
                     "  y:\n    <<: *r\n    high: 2.0\n")
    cfg = load_config(study)
    assert (cfg.search_space["y"].low, cfg.search_space["y"].high) == (0.0, 2.0)


# --------------------------------------------------------------------------- huge grids


def _grid(n_choices: int, values: int, **extra: object) -> dict:
    space = {f"c{i}": {"type": "choice", "values": list(range(values))} for i in range(n_choices)}
    return {"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 1.0, "strategy": "grid",
            "search_space": space, **extra}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (_grid(5, 10), r"strategy grid has 100,000 grid points \(the budget decides\)"),
        (_grid(2, 10, max_trials=20), r"strategy grid has 100 grid points \(max_trials is 20\)"),
        ({**_grid(0, 0), "search_space": {"x": {"type": "float", "low": 0, "high": 1},
                                          "n": {"type": "int", "low": 1, "high": 1000}},
          "grid_resolution": 50, "max_trials": 10}, r"2,500 grid points \(max_trials is 10\)"),
    ],
    ids=["over_10k", "over_max_trials", "ranges_times_resolution"],
)
def test_huge_grid_warns_with_the_count(config: dict, message: str):
    with pytest.warns(GridSizeWarning, match=message):
        load_config(config)


def test_small_grid_and_other_strategies_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error", GridSizeWarning)
        load_config(_grid(2, 3, max_trials=9))
        load_config({**_grid(6, 10), "strategy": "bo"})


# --------------------------------------------------------------------------- bad objectives

# kind -> the error the trial must carry (naming the metric and its value)
OBJECTIVE_CASES = {
    "nan": "metric 'accuracy' is not finite (nan)",
    "inf": "metric 'accuracy' is not finite (inf)",
    "neg_inf": "metric 'accuracy' is not finite (-inf)",
    "str_value": "metric 'accuracy' must be a number, got str '0.9'",
    "none_value": "metric 'accuracy' must be a number, got NoneType None",
    "nothing": "objective did not return metric 'accuracy' (it returned: nothing)",
    "a_string": "objective must return a dict of metrics such as {'accuracy': 0.9}, got str '0.9'",
    "a_float": "objective must return a dict of metrics such as {'accuracy': 0.9}, got float 0.9",
    "nan_energy": "metric 'energy_kwh' is not finite (nan)",
    "reports_nan": "tuner.report: metric 'accuracy' is not finite (nan)",
}


RETURNED = {k: v for k, v in OBJECTIVE_CASES.items() if k != "reports_nan"}
IN_RAY = ["nan", "none_value", "a_string", "reports_nan"]  # one real study; the rest as units


@pytest.mark.parametrize(("kind", "message"), RETURNED.items(), ids=list(RETURNED))
def test_bad_return_makes_a_failed_final_record(kind: str, message: str):
    measured = Measurement(energy_kwh=2e-6, duration_s=1.0, source="cpu-time-estimate", relative_uncertainty=0.5)
    record = _final_record("returned", bad_objectives.BAD_RETURNS[kind], {}, 0, measured, "accuracy")
    assert record["greentune_status"] == "failed"
    assert message in record["greentune_error"]
    assert record["energy_kwh"] == 2e-6  # measured energy still counted, not the bad figure


def test_report_of_a_non_finite_metric_raises_in_the_objective(monkeypatch):
    monkeypatch.setattr(trial_module, "_current", trial_module._Session())
    with pytest.raises(ValueError, match=r"tuner.report: metric 'loss' is not finite \(inf\)"):
        tuner.report(accuracy=0.5, loss=float("inf"))


@pytest.fixture(scope="module")
def bad_study(ray_session, tmp_path_factory):
    """One real grid study: a few bad returns and a bad report() in Ray trials, plus a good one."""
    out = tmp_path_factory.mktemp("bad_objectives") / "study"
    return tuner.tune(
        {"objective": bad_objectives.bad_return, "strategy": "grid", "seed": 0, "output_dir": out,
         "search_space": {"kind": {"type": "choice", "values": ["good", *IN_RAY]}}},
        budget_kwh=1.0,
        progress=False,
    )


@pytest.mark.ray
@pytest.mark.parametrize("kind", IN_RAY)
def test_bad_objective_fails_its_ray_trial_naming_metric_and_value(bad_study, kind: str):
    row = bad_study.trials.set_index("kind").loc[kind]
    assert row["status"] == "failed"
    assert OBJECTIVE_CASES[kind] in row["error"]
    assert row["energy_kwh"] > 0  # the energy it spent is still counted


@pytest.mark.ray
def test_no_bad_metric_reaches_the_front_or_mlflow(bad_study):
    import math

    from mlflow.tracking import MlflowClient

    front = bad_study.pareto_front
    assert list(front["kind"]) == ["good"]
    assert front["accuracy"].map(math.isfinite).all()
    client = MlflowClient(tracking_uri=bad_study.tracking_uri)
    parent = client.get_run(bad_study.mlflow_run_id)
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{bad_study.mlflow_run_id}'")
    assert len(children) == len(IN_RAY) + 1
    for child in children:
        assert all(math.isfinite(v) for v in child.data.metrics.values())
        if child.data.params["kind"] != "good":
            assert "accuracy" not in child.data.metrics or child.data.tags["greentune.status"] == "failed"


@pytest.mark.parametrize(
    "result",
    [
        {"greentune_status": "completed", "accuracy": float("nan"), "energy_kwh": 0.1},
        {"greentune_status": "completed", "accuracy": 0.5, "energy_kwh": float("inf")},
    ],
    ids=["nan_metric", "inf_energy"],
)
def test_searcher_never_tells_the_model_a_non_finite_outcome(result: dict):
    ledger = EnergyLedger(1.0, 10.0, "accuracy")
    ledger.start("t", {})
    ledger.observe("t", result)
    outcome = ledger.outcome("t")
    assert outcome.status == "failed" and "finite" in (outcome.error or "")


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (OBJ + "budget_kwh: [0.01\n" + SPACE, "not valid YAML at line"),
        (GOOD + "budget_kwh: 5\n", "duplicate key 'budget_kwh' at line 5"),
        (OBJ + "budget_kwh: lots\n" + SPACE, "budget_kwh: Input should be a valid number"),
    ],
    ids=["malformed_yaml", "duplicate_key", "wrong_type"],
)
def test_cli_bad_file_exits_2_with_one_line(tmp_path: Path, text: str, message: str):
    study = tmp_path / "bad.yaml"
    study.write_text(text)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(study)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("greentune: ") and message in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "greentune-runs").exists()
