"""The Pareto early-stopping rule and the Ax searcher's failure model, without Ray."""

from __future__ import annotations

from tuner.config import Choice, IntRange
from tuner.search.ax_searcher import FailureModel
from tuner.search.early_stopping import should_stop

FRONT = [(1.0, 0.5), (2.0, 0.8), (4.0, 0.9)]  # finished trials: (kWh, accuracy)


def test_a_climbing_curve_that_can_still_beat_the_front_continues():
    reports = [(0.5, 0.3), (1.0, 0.5), (1.5, 0.7)]  # 0.4 accuracy per kWh: beats 0.8 before 2 kWh
    assert not should_stop(reports, FRONT, horizon_kwh=5.0)


def test_a_flat_curve_stops_even_above_the_front():
    assert should_stop([(0.2, 0.6), (0.4, 0.7), (0.6, 0.7), (0.8, 0.7)], FRONT, horizon_kwh=5.0)


def test_a_slow_curve_that_stays_under_the_front_stops():
    reports = [(1.0, 0.2), (2.0, 0.25), (3.0, 0.3)]  # +0.05/kWh: 0.4 at the 5 kWh horizon < 0.9
    assert should_stop(reports, FRONT, horizon_kwh=5.0)
    assert not should_stop(reports, [], horizon_kwh=5.0)  # nothing to beat yet: keep going


def test_too_few_reports_never_stop_and_min_mode_is_mirrored():
    assert not should_stop([(1.0, 0.1), (2.0, 0.1)], FRONT, horizon_kwh=5.0)
    losses = [(1.0, 0.8), (2.0, 0.75), (3.0, 0.7)]  # loss falls 0.05/kWh: 0.6 at the 5 kWh horizon
    assert should_stop(losses, [(2.5, 0.1)], horizon_kwh=5.0, mode="min")
    assert not should_stop(losses, [(2.5, 0.65)], horizon_kwh=5.0, mode="min")
    assert not should_stop(losses, [(4.0, 0.1)], horizon_kwh=5.0, mode="min")  # undominated until 4 kWh


def test_failure_model_flags_repeats_and_a_failing_neighbourhood_only():
    space = {"bn": Choice(type="choice", values=[True, False]),
             "act": Choice(type="choice", values=["relu", "tanh", "gelu"]),
             "width": Choice(type="choice", values=[64, 128, 256, 512, 1024], ordered=True),
             "depth": IntRange(type="int", low=1, high=8)}
    model = FailureModel(space)
    for depth in (6, 7, 8):
        model.add({"bn": True, "act": "relu", "width": 1024, "depth": depth}, failed=True)
    for depth in (1, 2, 3):
        model.add({"bn": True, "act": "relu", "width": 64, "depth": depth}, failed=False)
    assert model.likely_fails({"bn": True, "act": "relu", "width": 1024, "depth": 8})  # failed before
    assert model.likely_fails({"bn": True, "act": "relu", "width": 512, "depth": 7})  # next to failures
    assert not model.likely_fails({"bn": True, "act": "relu", "width": 64, "depth": 4})
    assert model.failure_probability({"bn": False, "act": "gelu", "width": 64, "depth": 1}) < 0.5


def test_pareto_early_stopping_stops_a_trial_that_cannot_catch_the_front_and_skips_heartbeats():
    from tuner.search.early_stopping import ParetoEarlyStopping

    stopping = ParetoEarlyStopping("max", horizon_kwh=5.0)
    # a finished trial makes the front: 0.9 at 1 kWh
    for n, (kwh, acc) in enumerate([(0.3, 0.5), (0.6, 0.8), (1.0, 0.9)], start=1):
        assert not stopping.observe("a", n, kwh, acc)
    assert not stopping.observe("a", 3, 1.0, 0.9, finished=True, completed=True)
    assert stopping.front == [(1.0, 0.9)]
    # a slow learner: two reports, a heartbeat repeating the second (not a third report), then a third
    slow = [(1.0, 0.2, 1), (2.0, 0.25, 2), (2.5, 0.25, 2), (3.0, 0.3, 3)]
    decisions = [stopping.observe("b", n, kwh, acc) for kwh, acc, n in slow]
    assert decisions[:3] == [None, None, None]
    # the reason names the rule, the report, and the front it could not reach
    assert decisions[3] == ("pareto early stopping after report 3: front: at its rate of 0.05 per kWh it "
                            "reaches at most 0.4 by 5 kWh, never above the front (best 0.9 at 1 kWh)")
    assert stopping.stopped == ["b"] and (3.0, 0.3) in stopping.front


def test_a_plateau_and_the_horizon_are_named_as_reasons():
    from tuner.search.early_stopping import should_stop

    assert should_stop([(0.2, 0.6), (0.4, 0.7), (0.6, 0.7), (0.8, 0.7)], FRONT, horizon_kwh=5.0).startswith(
        "plateau: the metric went from 0.7 to 0.7")
    assert should_stop([(1.0, 0.1), (2.0, 0.2), (6.0, 0.3)], [], horizon_kwh=5.0).startswith(
        "horizon: it spent 6 kWh")


def test_early_stopping_config_field_is_validated():
    import pytest

    from tuner.config import ConfigError, load_config

    base = {"objective": "objectives.digits_mlp:digits_mlp", "budget_kwh": 1.0,
            "search_space": {"lr": {"type": "float", "low": 0.001, "high": 0.1}}}
    assert load_config(base).early_stopping == "none"
    assert load_config({**base, "early_stopping": "pareto"}).early_stopping == "pareto"
    with pytest.raises(ConfigError, match="early_stopping"):
        load_config({**base, "early_stopping": "asha"})
