"""Issue 23, validate before anything exists: each case is refused with one `ConfigError`
line before the output directory, the MLflow run or (for a local study) Ray exist.

Config cases go through :func:`tuner.tune` from a real YAML file or dict; capacity and
address cases run the real checks against this machine (or the Ray runtime already up in
this test process, whose capacity is what a study would get).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

import tuner
from tuner.config import ConfigError, load_config
from tuner.search.baselines import GridSearcher

ROOT = Path(__file__).resolve().parents[1]
OBJ = "objective: tests.objectives_for_tests:quadratic\n"
SPACE = "search_space:\n  x: {type: float, low: 0.0, high: 1.0}\n"
GOOD = OBJ + "budget_kwh: 0.01\n" + SPACE
BASE = {"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 0.01,
        "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}


def _refused(tmp_path: Path, config: str | dict, message: str, **kwargs: object) -> ConfigError:
    """``tune`` refuses ``config`` with one line matching ``message``, and nothing was made."""
    if isinstance(config, str):
        source: str | dict | Path = tmp_path / "study.yaml"
        source.write_text(config)
    else:
        source = config
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=message) as err:
        tuner.tune(source, output_dir=out, progress=False, **kwargs)
    assert "\n" not in str(err.value)
    assert not out.exists()
    return err.value


# --------------------------------------------------------------------------- strict types

BOOL_CASES = [
    ("budget", OBJ + "budget_kwh: true\n" + SPACE, r"budget_kwh: .*true/false is not a number"),
    ("max_trials", GOOD + "max_trials: true\n", r"max_trials: .*true/false is not a number"),
    ("pue", GOOD + "pue: true\n", r"pue: .*true/false is not a number"),
    ("seed", GOOD + "seed: false\n", r"seed: .*true/false is not a number"),
    ("range_bound", OBJ + "budget_kwh: 1\nsearch_space:\n  x: {type: float, low: false, high: 1}\n",
     r"search_space\.x.*low: .*true/false is not a number"),
    ("nested", GOOD + "energy: {watts_per_core: true}\n", r"energy\.watts_per_core: .*true/false"),
    ("dict_value", GOOD + "energy: {idle_watts: {cpu: true}}\n", r"energy\.idle_watts.*true/false"),
    ("resources", GOOD + "resources_per_trial: {cpu: true}\n", r"resources_per_trial\.cpu: .*true/false"),
]


@pytest.mark.parametrize(("text", "message"), [c[1:] for c in BOOL_CASES], ids=[c[0] for c in BOOL_CASES])
def test_a_bool_is_never_a_number(tmp_path: Path, text: str, message: str):
    _refused(tmp_path, text, message)


def test_bools_stay_fine_where_they_are_bools_or_choices():
    cfg = load_config({**BASE, "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0, "log": False},
                                                "flag": {"type": "choice", "values": [True, False]}},
                       "reuse_trial_processes": False})
    assert cfg.search_space["flag"].values == [True, False] and cfg.reuse_trial_processes is False


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64])
def test_seed_out_of_range_is_refused(tmp_path: Path, seed: int):
    _refused(tmp_path, GOOD + f"seed: {seed}\n", r"seed: .*0 \.\. 2\*\*32-1")


def test_seed_at_the_top_of_the_range_is_fine():
    assert load_config({**BASE, "seed": 2**32 - 1}).seed == 2**32 - 1


def test_a_million_choices_are_refused_with_the_limit(tmp_path: Path):
    config = {**BASE, "search_space": {"c": {"type": "choice", "values": list(range(10**6))}}}
    started = time.monotonic()
    _refused(tmp_path, config, r"search_space\.c\.values: a choice may hold at most 10,000 values \(got 1,000,000\)")
    assert time.monotonic() - started < 10


def test_bo_refuses_more_choices_than_ax_takes_but_random_does_not(tmp_path: Path):
    space = {"c": {"type": "choice", "values": list(range(1001))}}
    _refused(tmp_path, {**BASE, "search_space": space},
             r"search_space\.c: strategy bo takes at most 1,000 values in a choice \(Ax's limit\), got 1,001")
    assert len(load_config({**BASE, "search_space": space, "strategy": "random"}).search_space["c"].values) == 1001


@pytest.mark.filterwarnings("ignore::tuner.errors.GridSizeWarning")
def test_the_grid_is_never_materialised():
    """4.8 M grid points used 4.2 GB in the driver; the grid is now walked lazily."""
    cfg = load_config({**BASE, "strategy": "grid", "grid_resolution": 40, "seed": 0,
                       "search_space": {f"p{i}": {"type": "float", "low": 0, "high": 1} for i in range(4)}})
    tracemalloc.start()
    try:
        searcher = GridSearcher(cfg.tunable, metric="accuracy", mode="max", seed=0, resolution=40)
        first = [searcher.ask() for _ in range(5)]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert searcher.size == 40**4  # 2.56 M points
    assert peak < 40 * 2**20, f"{peak / 2**20:.0f} MiB for the grid"
    assert len({tuple(p.values()) for p in first}) == 5 and all(set(p) == {"p0", "p1", "p2", "p3"} for p in first)


def test_the_lazy_grid_visits_every_point_once_in_a_seeded_order():
    cfg = load_config({**BASE, "strategy": "grid", "seed": 3,
                       "search_space": {"x": {"type": "float", "low": 0, "high": 1},
                                        "n": {"type": "int", "low": 1, "high": 4},
                                        "c": {"type": "choice", "values": ["a", "b"]}}})

    def walk(seed: int) -> list[tuple]:
        searcher = GridSearcher(cfg.tunable, metric="accuracy", mode="max", seed=seed, resolution=3)
        points = []
        while isinstance(point := searcher.ask(), dict):
            points.append(tuple(point[k] for k in ("x", "n", "c")))
        return points

    points = walk(3)
    assert len(points) == len(set(points)) == 3 * 3 * 2
    assert points == walk(3) and points != walk(4)


# --------------------------------------------------------------------------- YAML limits


def test_yaml_alias_bomb_is_refused_at_load_time(tmp_path: Path):
    """Nine levels of ten aliases each inside one fixed value: 10^9 strings once expanded."""
    value = "{" + ", ".join(f"l{i}: &a{i} [" + ", ".join([f"*a{i - 1}" if i else "x"] * 10) + "]"
                            for i in range(9)) + "}"
    started = time.monotonic()
    _refused(tmp_path, GOOD + f"  big: {{type: fixed, value: {value}}}\n",
             r"study file .* holds more than 100,000 values once its aliases are expanded")
    assert time.monotonic() - started < 5


def test_deep_yaml_nesting_is_one_line_not_a_recursion_error(tmp_path: Path):
    deep = "[" * 3000 + "]" * 3000
    _refused(tmp_path, GOOD + f"  deep: {{type: fixed, value: {deep}}}\n",
             r"study file .* nested deeper than 64 levels at line 5")


def test_a_huge_study_file_is_refused_before_parsing(tmp_path: Path):
    padding = "# " + "x" * 1000 + "\n"
    _refused(tmp_path, GOOD + padding * 5000, r"study file .* is 4\.8 MiB; the limit is 1 MiB")


def test_python_dicts_get_the_same_limits(tmp_path: Path):
    level: list = ["x"] * 10
    for _ in range(8):
        level = [level] * 10  # shared references: small in memory, 10^9 values when dumped
    _refused(tmp_path, {**BASE, "search_space": {**BASE["search_space"], "big": {"type": "fixed", "value": level}}},
             r"the config holds more than 100,000 values")
    deep: list = []
    for _ in range(200):
        deep = [deep]
    _refused(tmp_path, {**BASE, "search_space": {**BASE["search_space"], "deep": {"type": "fixed", "value": deep}}},
             r"the config is nested deeper than 64 levels")


def test_ordinary_anchors_and_merges_still_load(tmp_path: Path):
    study = tmp_path / "study.yaml"
    study.write_text(OBJ + "budget_kwh: 0.01\nsearch_space:\n  x: &r {type: float, low: 0.0, high: 1.0}\n"
                     "  y:\n    <<: *r\n    high: 2.0\n")
    assert load_config(study).search_space["y"].high == 2.0


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("metric", ["energy_cpu_kwh", "co2_g", "hw_gpu", "carbon_intensity", "greentune_x",
                                    "done", "timestamp", "training_iteration"])
def test_reserved_metric_names_are_refused(tmp_path: Path, metric: str):
    _refused(tmp_path, GOOD + f"metric: {metric}\n", rf"metric '{metric}' is reserved")


@pytest.mark.parametrize(
    ("name", "reason"),
    [("../etc/passwd", "must not start with '..'"), ("/abs", "must not start with '/'"),
     ("a//b", "would resolve to 'a/b'"), ("lr@1", r"may hold only letters, digits"),
     ("x" * 251, "longer than 250 characters")],
    ids=["dotdot", "absolute", "double_slash", "bad_char", "too_long"],
)
def test_parameter_names_mlflow_would_refuse_are_refused_with_the_reason(tmp_path: Path, name: str, reason: str):
    config = {**BASE, "search_space": {**BASE["search_space"], name: 3}}
    _refused(tmp_path, config, rf"search_space: parameter name '.*': .*{reason}")


def test_our_name_rule_agrees_with_mlflow():
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_param_name

    from tuner.config import mlflow_name_problem

    for name in ["lr", "a/b", "a b", "a.b-c", "a:b", "../x", "/x", "a//b", "x/", "./x", ".", "a@b", "ü", "a\tb"]:
        try:
            _validate_param_name(name)
            accepted = True
        except MlflowException:
            accepted = False
        assert accepted == (mlflow_name_problem(name) is None), name


def test_a_parameter_named_like_the_metric_is_refused(tmp_path: Path):
    config = {**BASE, "search_space": {**BASE["search_space"], "accuracy": 3}}
    _refused(tmp_path, config, r"parameter 'accuracy' has the metric's name")


# --------------------------------------------------------------------------- resources


def test_a_trial_that_reserves_nothing_is_refused(tmp_path: Path):
    _refused(tmp_path, GOOD + "resources_per_trial: {cpu: 0}\n",
             r"resources_per_trial: a trial must reserve some cpu or gpu")


def test_a_fraction_above_one_gpu_is_refused(tmp_path: Path):
    _refused(tmp_path, GOOD + "resources_per_trial: {gpu: 1.5}\n",
             r"resources_per_trial\.gpu: a share of one GPU is a fraction <= 1; above 1 give a whole number, got 1\.5")


@pytest.mark.parametrize(
    ("resources", "message"),
    [("{cpu: 1000000}", r"resources_per_trial asks 1e\+06 CPUs and 0 GPUs per trial; no node .* has that"),
     ("{cpu: 1, gpu: 1}", r"resources_per_trial asks 1 CPUs and 1 GPUs per trial; no node .* has that")],
    ids=["cpus", "gpu_without_gpus"],
)
def test_resources_beyond_the_machine_are_refused(tmp_path: Path, resources: str, message: str):
    from tuner.study.preflight import machine_capacity

    if machine_capacity()[1] > 0 and "gpu" in resources:
        pytest.skip("this machine has a GPU")
    started = time.monotonic()
    _refused(tmp_path, GOOD + f"resources_per_trial: {resources}\n", message)
    assert time.monotonic() - started < 30


@pytest.mark.ray
def test_resources_beyond_a_running_ray_are_refused_before_any_file(ray_session, tmp_path: Path):
    """The cluster path: Ray is up (2 CPUs here); its nodes are asked, not this machine."""
    _refused(tmp_path, GOOD + "resources_per_trial: {cpu: 3}\n",
             r"asks 3 CPUs and 0 GPUs per trial; no node \(the running Ray: largest node: 2 CPUs, 0 GPUs\)")


def test_a_node_type_the_autoscaler_can_add_is_enough(caplog):
    from tuner.config import Resources
    from tuner.study.preflight import check_fits

    head = [{"CPU": 4.0}]
    check_fits(Resources(cpu=1, gpu=1), head, [{"CPU": 8.0, "GPU": 1.0}], True, "the Ray cluster at h:6379")
    with caplog.at_level("WARNING", logger="tuner"):  # an autoscaler that does not say what it adds
        check_fits(Resources(cpu=1, gpu=1), head, [], True, "the Ray cluster at h:6379")
    assert "its autoscaler does not say what it can add" in caplog.text
    with pytest.raises(ConfigError, match=r"largest node: 4 CPUs, 0 GPUs"):
        check_fits(Resources(cpu=1, gpu=1), head, [{"CPU": 8.0}], True, "the Ray cluster at h:6379")


def test_machine_capacity_is_what_a_local_ray_would_get():
    import ray._private.utils as ray_utils

    from tuner.study.preflight import machine_capacity

    cpus, gpus = machine_capacity()
    assert cpus == ray_utils.get_num_cpus() and gpus >= 0


# --------------------------------------------------------------------------- the address


def test_an_unreachable_address_fails_fast_and_leaves_nothing(tmp_path: Path):
    started = time.monotonic()
    err = _refused(tmp_path, GOOD + "address_timeout_s: 2\n", r"address: the Ray cluster at 127\.0\.0\.1:1 "
                   r"did not answer within 2 s", address="127.0.0.1:1")
    assert "Connection refused" in str(err) or "timed out" in str(err)
    assert time.monotonic() - started < 10


def test_a_silent_address_times_out_in_the_configured_time(tmp_path: Path):
    """A port whose accept queue is full: Linux drops the handshake, as a firewalled host does."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(0)
    port = silent.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=2)  # fills the queue of one
    try:
        started = time.monotonic()
        err = _refused(tmp_path, GOOD + "address_timeout_s: 1.5\n", r"did not answer within 1\.5 s",
                       address=f"127.0.0.1:{port}")
        assert "timed out" in str(err)
        assert 1.4 < time.monotonic() - started < 8
    finally:
        filler.close()
        silent.close()


def test_cli_unreachable_address_exits_2_and_leaves_no_study(tmp_path: Path):
    study = tmp_path / "study.yaml"
    study.write_text(GOOD + "address_timeout_s: 3\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "tuner.cli", "run", str(study), "--address", "127.0.0.1:1"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "127.0.0.1:1" in proc.stderr
    assert time.monotonic() - started < 60
    assert not list(tmp_path.rglob("study.json")) and not (tmp_path / "greentune-runs").exists()


# --------------------------------------------------------------------------- output_dir


def test_an_empty_output_dir_is_refused(tmp_path: Path):
    study = tmp_path / "study.yaml"
    study.write_text(GOOD + "output_dir: ''\n")
    with pytest.raises(ConfigError, match=r"output_dir: must not be empty"):
        tuner.tune(study, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.yaml"]


def test_a_folder_that_is_not_a_study_is_refused_and_left_alone(tmp_path: Path):
    victim = tmp_path / "etc"
    victim.mkdir()
    (victim / "trials.csv").write_text("precious\n")
    (victim / "notes.txt").write_text("mine\n")
    config = {**BASE, "output_dir": str(tmp_path / "a" / ".." / "etc")}
    with pytest.raises(ConfigError, match=r"output_dir '.*etc' is not empty and holds no study \(no study\.json\)"):
        tuner.tune(config, progress=False)
    assert sorted(p.name for p in victim.iterdir()) == ["notes.txt", "trials.csv"]
    assert (victim / "trials.csv").read_text() == "precious\n"


def test_an_output_dir_that_is_a_file_is_a_clean_error(tmp_path: Path):
    target = tmp_path / "out"
    target.write_text("a file\n")
    with pytest.raises(ConfigError, match=r"output_dir '.*out' is a file, not a directory"):
        tuner.tune({**BASE, "output_dir": str(target)}, progress=False)
    assert target.read_text() == "a file\n"


def test_leftovers_of_a_failed_start_are_not_in_the_way(tmp_path: Path):
    from tuner.study.preflight import check_output_dir

    out = tmp_path / "out"
    out.mkdir()
    for name in ("study.lock", "mlflow.db", "mlflow-queue.jsonl", ".study.json.abc.tmp"):
        (out / name).write_text("")
    (out / "mlartifacts").mkdir()
    check_output_dir(out, resume=False)  # no error
    check_output_dir(tmp_path / "new", resume=False)
    (out / "model.pt").write_text("")
    with pytest.raises(ConfigError, match="model.pt"):
        check_output_dir(out, resume=False)
