"""The study config rejects bad input with one clear error, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuner.config import Choice, ConfigError, FloatRange, IntRange, StudyConfig, load_config

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
BASE = {"objective": "tests.objectives_for_tests:quadratic", "search_space": SPACE, "budget_kwh": 0.01}


def test_defaults_maximise_accuracy_with_bo():
    cfg = load_config(BASE)
    assert (cfg.metric, cfg.mode, cfg.strategy, cfg.pue) == ("accuracy", "max", "bo", 1.0)
    assert cfg.resources_per_trial.cpu == 1 and cfg.resources_per_trial.gpu == 0


def test_all_parameter_kinds_parse():
    cfg = load_config({**BASE, "search_space": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "width": {"type": "int", "low": 8, "high": 64, "log": True},
        "opt": {"type": "choice", "values": ["adam", "sgd"]},
        "batch": {"type": "choice", "values": [16, 32, 64], "ordered": True},
        "seed": 3,
        "note": {"type": "fixed", "value": "x"},
        "single": {"type": "choice", "values": ["only"]},
    }})
    space = cfg.search_space
    assert isinstance(space["lr"], FloatRange) and space["lr"].log
    assert isinstance(space["width"], IntRange)
    assert isinstance(space["batch"], Choice) and space["batch"].ordered
    assert set(cfg.tunable) == {"lr", "width", "opt", "batch"}
    assert cfg.fixed == {"seed": 3, "note": "x", "single": "only"}


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match="unknown key 'budget_kw'; did you mean 'budget_kwh'"):
        load_config({**BASE, "budget_kw": 1})


def test_unknown_nested_key_names_the_section():
    with pytest.raises(ConfigError, match=r"search_space\.x.*unknown key 'hgih'; did you mean 'high'"):
        load_config({**BASE, "search_space": {"x": {"type": "float", "low": 0, "hgih": 1}}})


def test_a_fixed_mapping_is_written_with_type_fixed():
    """The documented way to pass a mapping unchanged; a bare mapping is refused (it may be a misspelt spec)."""
    net = {"hidden": 64, "layers": 2, "type": "mlp"}
    cfg = load_config({**BASE, "search_space": {**SPACE, "net": {"type": "fixed", "value": net}}})
    assert cfg.fixed == {"net": net}
    with pytest.raises(ConfigError, match=r"search_space\.net: a parameter spec needs 'type'"):
        load_config({**BASE, "search_space": {**SPACE, "net": {"hidden": 64}}})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"tpye": "float", "low": 0, "high": 1}, "unknown key 'tpye'; did you mean 'type'?"),
        ({"Type": "float", "low": 0, "high": 1}, "unknown key 'Type'; did you mean 'type'?"),
        ({"typ": "choice", "values": [1, 2]}, "unknown key 'typ'; did you mean 'type'?"),
        ({"type": "Float", "low": 0, "high": 1}, "type 'Float' is not a parameter type; did you mean 'float'?"),
        ({"type": "choise", "values": [1, 2]}, "type 'choise' is not a parameter type; did you mean 'choice'?"),
        ({"values": [1, 2]}, "a parameter spec needs 'type'"),
    ],
)
def test_misspelt_specs_are_errors_not_fixed_values(spec, message):
    with pytest.raises(ConfigError, match=r"search_space\.lr: ") as err:
        load_config({**BASE, "search_space": {**SPACE, "lr": spec}})
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("budget", [0, -1, float("nan"), float("inf")])
def test_budget_must_be_positive(budget):
    with pytest.raises(ConfigError, match="budget_kwh"):
        load_config({**BASE, "budget_kwh": budget})


def test_budget_is_required():
    data = dict(BASE)
    del data["budget_kwh"]
    with pytest.raises(ConfigError, match="budget_kwh: is required"):
        load_config(data)


def test_bad_objective_path_fails_at_validation():
    with pytest.raises(ConfigError, match="objective.*cannot be imported"):
        load_config({**BASE, "objective": "no_such_module_xyz:f"})
    with pytest.raises(ConfigError, match="has no 'nope'"):
        load_config({**BASE, "objective": "tests.objectives_for_tests:nope"})
    with pytest.raises(ConfigError, match="module:function"):
        load_config({**BASE, "objective": "just_a_name"})


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"type": "float", "low": 1, "high": 0}, "must be less than high"),
        ({"type": "float", "low": 0, "high": 1, "log": True}, "log-scale range needs low > 0"),
        ({"type": "choice", "values": []}, "at least one value"),
        ({"type": "choice", "values": [1, 1]}, "unique"),
        ({"type": "choice", "values": [1, "a"]}, "one type"),
        ({"type": "range", "low": 0, "high": 1}, "search_space.x"),
    ],
)
def test_bad_parameter_specs_name_the_parameter(spec, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config({**BASE, "search_space": {"x": spec}})
    assert "search_space.x" in str(err.value)


def test_reserved_names_and_bad_metric_rejected():
    with pytest.raises(ConfigError, match="reserved"):
        load_config({**BASE, "search_space": {"energy_kwh": {"type": "float", "low": 0, "high": 1}}})
    with pytest.raises(ConfigError, match="reserved"):
        load_config({**BASE, "search_space": {"hw_gpu": {"type": "float", "low": 0, "high": 1}}})
    with pytest.raises(ConfigError, match="reserved"):
        load_config({**BASE, "metric": "energy_kwh"})
    with pytest.raises(ConfigError, match="identifier"):
        load_config({**BASE, "metric": "val acc"})


def test_only_fixed_values_is_an_error():
    with pytest.raises(ConfigError, match="only fixed values"):
        load_config({**BASE, "search_space": {"x": 1}})


def test_overrides_replace_fields_and_none_keeps_them():
    cfg = load_config(BASE, budget_kwh=0.5, strategy=None, max_trials=3)
    assert (cfg.budget_kwh, cfg.strategy, cfg.max_trials) == (0.5, "bo", 3)
    with pytest.raises(ConfigError, match="strategy"):
        load_config(BASE, strategy="annealing")


def test_yaml_dict_and_object_give_the_same_config(tmp_path: Path):
    path = tmp_path / "study.yaml"
    path.write_text(
        "objective: tests.objectives_for_tests:quadratic\n"
        "budget_kwh: 0.01\n"
        "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n"
    )
    from_yaml = load_config(path)
    from_dict = load_config(BASE)
    from_object = load_config(from_dict)
    assert from_yaml == from_dict == from_object
    assert isinstance(from_object, StudyConfig)


def test_yaml_errors_are_clear(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("objective: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_output_dir_and_tracking_uri_are_absolute(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = load_config({**BASE, "name": "demo"})
    assert cfg.resolved_output_dir == tmp_path / "greentune-runs" / "demo"
    assert cfg.tracking_uri == f"sqlite:///{tmp_path}/greentune-runs/demo/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert cfg.tracking_uri == "http://127.0.0.1:5000"
    explicit = load_config({**BASE, "mlflow": {"tracking_uri": "sqlite:////x.db"}})
    assert explicit.tracking_uri == "sqlite:////x.db"


def test_study_name_defaults_to_objective_name():
    assert load_config(BASE).study_name == "quadratic"


def test_max_consecutive_failures_defaults_to_5_and_0_or_none_disables():
    assert load_config(BASE).max_consecutive_failures == 5
    assert load_config({**BASE, "max_consecutive_failures": 0}).max_consecutive_failures == 0
    assert load_config({**BASE, "max_consecutive_failures": None}).max_consecutive_failures is None
    with pytest.raises(ConfigError, match="max_consecutive_failures"):
        load_config({**BASE, "max_consecutive_failures": -1})
