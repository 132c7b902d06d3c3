"""Property-based tests: config parsing round-trips and fails only with ConfigError; the
energy ledger's books stay straight under any sequence of trial events."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuner.config import RESERVED_NAMES, RESERVED_PREFIXES, ConfigError, StudyConfig, load_config
from tuner.energy import J_PER_KWH
from tuner.study.ledger import EnergyLedger
from tuner.study.record import is_reserved_result_key

OBJECTIVE = "tests.objectives_for_tests:quadratic"
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- valid configs

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in RESERVED_NAMES and not n.startswith(RESERVED_PREFIXES)
)
finite = st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False)
text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF, blacklist_categories=("Cs",)), max_size=12)


@st.composite
def float_ranges(draw: st.DrawFn) -> dict[str, Any]:
    log = draw(st.booleans())
    bound = st.floats(min_value=1e-9, max_value=1e9) if log else finite
    low, high = sorted(draw(st.lists(bound, min_size=2, max_size=2, unique=True)))
    return {"type": "float", "low": low, "high": high, "log": log}


@st.composite
def int_ranges(draw: st.DrawFn) -> dict[str, Any]:
    log = draw(st.booleans())
    bound = st.integers(1, 10**6) if log else st.integers(-(10**6), 10**6)
    low, high = sorted(draw(st.lists(bound, min_size=2, max_size=2, unique=True)))
    return {"type": "int", "low": low, "high": high, "log": log}


choices = st.one_of(
    st.lists(st.integers(-1000, 1000), min_size=2, max_size=5, unique=True),
    st.lists(finite, min_size=2, max_size=5, unique=True),
    st.lists(text, min_size=2, max_size=5, unique=True),
).map(lambda values: {"type": "choice", "values": values, "ordered": len(values) % 2 == 0})
fixed = st.one_of(st.integers(), finite, text, st.booleans()).map(lambda v: {"type": "fixed", "value": v})
tunable = st.one_of(float_ranges(), int_ranges(), choices)


@st.composite
def valid_configs(draw: st.DrawFn) -> dict[str, Any]:
    space = draw(st.dictionaries(names, tunable, min_size=1, max_size=4))
    space.update(draw(st.dictionaries(names.filter(lambda n: n not in space), fixed, max_size=2)))
    return {
        "objective": OBJECTIVE,
        "search_space": space,
        "budget_kwh": draw(st.floats(min_value=1e-9, max_value=1e6)),
        # a parameter may not share the metric's name, nor may the metric be one of Ray's result keys
        "metric": draw(names.filter(lambda n: n not in space and not is_reserved_result_key(n))),
        "mode": draw(st.sampled_from(["max", "min"])),
        "strategy": draw(st.sampled_from(["bo", "random", "sobol", "grid"])),
        "seed": draw(st.none() | st.integers(0, 2**31)),
        "max_trials": draw(st.none() | st.integers(1, 10**4)),
        "pue": draw(st.floats(min_value=1.0, max_value=3.0)),
        "name": draw(st.none() | st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,15}", fullmatch=True)),
        "grid_resolution": draw(st.integers(2, 5)),
    }


def _load_quietly(source: Any) -> StudyConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # big random grids warn; that is tested elsewhere
        return load_config(source)


@FAST
@given(data=valid_configs())
def test_valid_config_round_trips_through_yaml(tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any]):
    config = _load_quietly(data)
    dumped = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    path = Path(tmp_path_factory.mktemp("rt")) / "study.yaml"
    path.write_text(dumped, encoding="utf-8")
    again = _load_quietly(path)
    assert again == config
    assert list(again.search_space) == list(config.search_space)


# --------------------------------------------------------------------------- invalid configs

garbage = st.recursive(
    st.none() | st.booleans() | st.integers() | st.sampled_from([10**400, -(10**30), 2**63]) | st.floats() | text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=6,
)
TOP_FIELDS = [f for f in StudyConfig.model_fields if f != "objective"]  # no random imports

always_invalid = st.one_of(
    st.tuples(st.just(("budget_kwh",)), st.sampled_from([0, -1.0, math.nan, math.inf, -math.inf, "lots", None])),
    st.tuples(st.just(("pue",)), st.floats(max_value=0.999) | st.just(math.nan) | st.just(math.inf)),
    st.tuples(st.just(("search_space",)), st.sampled_from([{}, [], None, "x", 3])),
    st.tuples(st.just(("max_trials",)), st.integers(max_value=0) | st.just(2.5)),
    st.tuples(st.just(("name",)), st.sampled_from(["../../etc", "a/b", "/abs", "..", ".hidden", ""])),
    st.tuples(st.just(("x", "high")), st.floats(max_value=0.0) | st.just(math.nan)),  # x.low is 0
    st.tuples(st.just(("x", "low")), st.floats(min_value=1.0) | st.integers(min_value=1)),
    st.tuples(st.just(("x", "log")), st.just(True)),  # low 0 on a log scale
    st.tuples(text.filter(lambda k: k not in StudyConfig.model_fields).map(lambda k: (k,)), garbage),
)


def _mutate(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"objective": OBJECTIVE, "budget_kwh": 0.01,
                            "search_space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}}
    if path[0] == "x":
        data["search_space"]["x"][path[1]] = value
    else:
        data[path[0]] = value
    return data


@FAST
@given(case=always_invalid)
def test_invalid_values_always_raise_config_error(case: tuple[tuple[str, ...], Any]):
    with pytest.raises(ConfigError) as err:
        _load_quietly(_mutate(*case))
    assert str(err.value).startswith("invalid study config: ")


@FAST
@given(field=st.sampled_from(TOP_FIELDS), value=garbage)
def test_any_value_in_any_field_is_accepted_or_a_config_error(field: str, value: Any):
    try:
        _load_quietly(_mutate((field,), value))
    except ConfigError as exc:
        assert field in str(exc) or "search_space" in str(exc)


@FAST
@given(spec=st.dictionaries(st.sampled_from(["type", "low", "high", "log", "values", "value", "ordered"]),
                            garbage | st.sampled_from(["float", "int", "choice", "fixed"]), max_size=5))
def test_any_parameter_spec_is_accepted_or_a_config_error(spec: dict[str, Any]):
    try:
        _load_quietly({"objective": OBJECTIVE, "budget_kwh": 1.0,
                       "search_space": {"x": spec, "y": {"type": "int", "low": 0, "high": 3}}})
    except ConfigError as exc:
        assert "search_space" in str(exc)


@FAST
@given(raw=st.binary(max_size=200) | text.map(str.encode))
def test_any_file_content_is_a_config_error_or_a_config(tmp_path_factory: pytest.TempPathFactory, raw: bytes):
    path = Path(tmp_path_factory.mktemp("raw")) / "study.yaml"
    path.write_bytes(raw)
    with pytest.raises(ConfigError):  # no random bytes make a whole valid study
        _load_quietly(path)


# --------------------------------------------------------------------------- the ledger

WATTS = 10.0
trial_ids = st.sampled_from(["t0", "t1", "t2", "t3"])
energies = st.floats(min_value=0.0, max_value=1.0) | st.sampled_from([-0.5, math.nan, math.inf, None])
events = st.lists(
    st.one_of(
        st.tuples(st.just("start"), trial_ids, st.none()),
        st.tuples(st.just("beat"), trial_ids, energies),
        st.tuples(st.just("complete"), trial_ids, energies),
        st.tuples(st.just("fail_report"), trial_ids, energies),
        st.tuples(st.just("died"), trial_ids, st.none()),
        st.tuples(st.just("paused"), trial_ids, st.none()),  # pause-resume: a new run, counting from 0
        st.tuples(st.just("searcher_step"), st.just(""), st.floats(min_value=0.0, max_value=100.0)),
    ),
    max_size=40,
)


def _apply(ledger: EnergyLedger, clock: list[float], segments: dict[str, int], event: tuple[str, str, Any]) -> None:
    kind, trial, value = event
    run = {"greentune_segment": f"{trial}-run{segments.get(trial, 0)}"}
    if kind == "start":
        ledger.start(trial, {"x": 0.5})
    elif kind == "beat":
        ledger.observe(trial, {"energy_kwh": value, "greentune_status": "running", **run})
    elif kind == "complete":
        ledger.observe(trial, {"energy_kwh": value, "greentune_status": "completed", "accuracy": 0.5, **run})
    elif kind == "fail_report":
        ledger.observe(trial, {"energy_kwh": value, "greentune_status": "failed", "greentune_error": "boom", **run})
    elif kind == "paused":
        segments[trial] = segments.get(trial, 0) + 1
    elif kind == "died":
        ledger.fail(trial, "actor died")
    else:
        clock[0] += value  # the searcher's CPU seconds only grow


@settings(max_examples=150, deadline=None)
@given(sequence=events)
def test_ledger_books_stay_straight(sequence: list[tuple[str, str, Any]]):
    clock = [0.0]
    segments: dict[str, int] = {}
    ledger = EnergyLedger(0.5, WATTS, "accuracy", overhead_cpu_s=lambda: clock[0])
    before: dict[str, float] = {}
    frozen: dict[str, float] = {}
    for event in sequence:
        _apply(ledger, clock, segments, event)
        for trial_id, entry in ledger.records.items():
            assert entry.energy_kwh >= 0 and math.isfinite(entry.energy_kwh)
            if trial_id in frozen:  # a final figure never changes again
                assert entry.energy_kwh == frozen[trial_id]
            elif not entry.final:  # live energy never goes down
                assert entry.energy_kwh >= before.get(trial_id, 0.0)
            if entry.final:
                frozen.setdefault(trial_id, entry.energy_kwh)
            before[trial_id] = entry.energy_kwh
        assert ledger.overhead_kwh == pytest.approx(clock[0] * WATTS / J_PER_KWH)
        parts = sum(e.energy_kwh for e in ledger.records.values()) + ledger.overhead_kwh
        assert ledger.total_kwh == pytest.approx(parts, rel=1e-12, abs=1e-15)
        assert ledger.total_kwh >= 0
    closed = {e.trial_id for e in ledger.close_unfinished()}
    assert all(ledger.records[t].final for t in closed)
    assert all(ledger.records[t].energy_kwh == before[t] for t in closed)  # closing keeps what was spent
    assert ledger.total_kwh == pytest.approx(sum(before.values()) + ledger.overhead_kwh, rel=1e-12, abs=1e-15)
