"""Searchers without Ray: the baselines cover their space, Ax approaches a known front."""

from __future__ import annotations

import math

import numpy as np
import pytest
from ray.tune.search import Searcher

from tuner.config import Choice, FloatRange, IntRange, load_config
from tuner.pareto import pareto_mask
from tuner.search import GridSearcher, Outcome, RandomSearcher, make_searcher
from tuner.search.baselines import grid_levels

SPACE = {
    "lr": FloatRange(type="float", low=1e-4, high=1e-1, log=True),
    "width": IntRange(type="int", low=8, high=64),
    "opt": Choice(type="choice", values=["adam", "sgd"]),
}


def _complete(searcher, trial_id, metric, energy):
    searcher.complete(trial_id, Outcome("completed", metric, energy))


def test_grid_levels_are_log_spaced_and_integer():
    assert grid_levels(SPACE["lr"], 4) == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert grid_levels(SPACE["width"], 3) == [8, 36, 64]
    assert grid_levels(SPACE["opt"], 3) == ["adam", "sgd"]


def test_grid_visits_every_combination_once_then_finishes():
    grid = GridSearcher(SPACE, fixed={"seed": 1}, seed=0, resolution=3)
    seen = []
    for i in range(grid.size):
        params = grid.suggest(f"t{i}")
        assert params["seed"] == 1
        seen.append((params["lr"], params["width"], params["opt"]))
        _complete(grid, f"t{i}", 0.5, 1e-6)
    assert len(set(seen)) == grid.size == 3 * 3 * 2
    assert grid.suggest("extra") == Searcher.FINISHED


def test_grid_order_is_seeded_not_lexicographic():
    first = [GridSearcher(SPACE, seed=s).suggest("t") for s in (0, 1)]
    assert first[0] != first[1]


def test_random_samples_stay_in_bounds_and_spread_on_log_scale():
    searcher = RandomSearcher(SPACE, seed=0)
    samples = [searcher.suggest(f"t{i}") for i in range(400)]
    lrs = np.array([s["lr"] for s in samples])
    widths = [s["width"] for s in samples]
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-1
    assert all(isinstance(w, int) and 8 <= w <= 64 for w in widths)
    assert {s["opt"] for s in samples} == {"adam", "sgd"}
    # log-uniform: about a third of the samples in each decade
    decade_share = np.mean(lrs < 1e-3)
    assert 0.25 < decade_share < 0.42


def test_random_is_reproducible_by_seed():
    a = [RandomSearcher(SPACE, seed=5).suggest("t") for _ in range(2)]
    assert a[0] == a[1]


def test_failed_and_stopped_outcomes_are_accepted():
    cfg = load_config({"objective": "tests.objectives_for_tests:quadratic",
                       "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
                       "budget_kwh": 1.0, "strategy": "sobol", "seed": 0})
    searcher = make_searcher(cfg)
    searcher.suggest("a")
    searcher.suggest("b")
    searcher.suggest("c")
    searcher.complete("a", Outcome("failed", error="boom"))
    searcher.complete("b", Outcome("failed"))
    searcher.complete("c", Outcome("stopped"))
    statuses = {t.index: t.status.name for t in searcher.client._experiment.trials.values()}
    assert sorted(statuses.values()) == ["ABANDONED", "FAILED", "FAILED"]


def _two_objective(x: float, y: float) -> tuple[float, float]:
    """accuracy = x, energy = 0.01 + x^2 (1 + y): the front is y = 0, energy = 0.01 + acc^2."""
    return x, 0.01 + x * x * (1 + y)


def _front_gap(points: list[tuple[float, float]]) -> float:
    """Mean vertical distance of the found front from the true front energy(acc) = 0.01 + acc^2."""
    acc = np.array([p[0] for p in points])
    energy = np.array([p[1] for p in points])
    mask = pareto_mask(acc, energy, "max")
    return float(np.mean(energy[mask] - (0.01 + acc[mask] ** 2)))


def _hypervolume(points: list[tuple[float, float]]) -> float:
    """Area dominated in (accuracy up, energy down) with reference (0, 2.01)."""
    pts = sorted((e, a) for a, e in points)
    best, area, prev_e = 0.0, 0.0, None
    for e, a in pts:
        if prev_e is not None:
            area += (e - prev_e) * best
        best, prev_e = max(best, a), e
    return area + (2.01 - prev_e) * best


def test_ax_bo_approaches_the_known_front_and_beats_its_own_start():
    cfg = load_config({
        "objective": "tests.objectives_for_tests:quadratic",
        "search_space": {"x": {"type": "float", "low": 0, "high": 1},
                         "y": {"type": "float", "low": 0, "high": 1}},
        "budget_kwh": 2.01, "metric_threshold": 0.0, "strategy": "bo", "seed": 0, "initial_trials": 5,
    })
    searcher = make_searcher(cfg)
    points = []
    for i in range(16):
        params = searcher.suggest(f"t{i}")
        acc, energy = _two_objective(params["x"], params["y"])
        points.append((acc, energy))
        _complete(searcher, f"t{i}", acc, energy)
    assert "CostAwareLogNEHVI" in searcher.generation_strategy_name
    bo_points = points[5:]
    # BO puts its points near y = 0, where the front is; the Sobol start does not.
    assert _front_gap(points) < 0.05
    assert np.mean([e - (0.01 + a * a) for a, e in bo_points]) < np.mean(
        [e - (0.01 + a * a) for a, e in points[:5]]
    )
    assert _hypervolume(points) > _hypervolume(points[:5])
    # BO's points spread along the front rather than piling on one point of it.
    acc, energy = np.array(points).T
    assert pareto_mask(acc[5:], energy[5:]).sum() >= 3
    assert len(searcher.step_seconds) == 16 and searcher.cpu_seconds > 0
    assert all(math.isfinite(s) for s in searcher.step_seconds)


def test_warm_started_fits_reach_the_optimum_of_a_fit_from_scratch():
    """Each step's GP fit starts from the last fit's hyperparameters, with a fit from scratch
    as the data grows by a quarter; the warm fit reaches the same marginal likelihood."""
    import torch
    from ax.generators.torch.botorch_modular.surrogate import Surrogate
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from tuner.search.ax_searcher import AxSearcher
    from tuner.search.base import Outcome

    space = {"x": FloatRange(type="float", low=0, high=1), "y": FloatRange(type="float", low=0, high=1)}
    searcher = AxSearcher(space, metric="accuracy", mode="max", seed=0, initial_trials=5)
    for _ in range(16):
        params = searcher.ask()
        searcher.tell(params, Outcome("completed", *_two_objective(params["x"], params["y"])))
    searcher.ask()  # fitted on 16 trials, warm: the last fit from scratch was at 15 (>= 1.25 x 12)
    assert Surrogate.fit.__qualname__ == "Surrogate.fit"  # Ax's own method again after the step
    assert searcher._fits.cold == 5 and searcher._fits.warm == 7  # from scratch at 5, 7, 9, 12, 15 trials

    warm = searcher.client._generation_strategy._nodes[-1].generator_specs[0]._fitted_adapter.generator.surrogate
    cold = Surrogate(surrogate_spec=warm.surrogate_spec)
    cold.fit(datasets=warm.training_data, search_space_digest=warm._last_search_space_digest)

    def log_likelihood(model) -> float:
        model.train()
        with torch.no_grad():
            return float(ExactMarginalLogLikelihood(model.likelihood, model)(
                model(*model.train_inputs), model.train_targets).sum())

    assert log_likelihood(warm.model) == pytest.approx(log_likelihood(cold.model), rel=0.01)


def test_ax_bo_on_a_discrete_space_proposes_no_repeat_and_finds_the_cheap_end_of_the_front():
    """Batch size x power limit x epochs, the shape of a GPU study: every point Ax proposes is
    new (no random stand-ins for repeats), and the search spends its trials near the front."""
    from tuner.search.ax_searcher import AxSearcher
    from tuner.search.base import Outcome

    space = {
        "batch": Choice(type="choice", values=[16, 32, 64, 128], ordered=True),
        "power": Choice(type="choice", values=[100, 150, 200, 250], ordered=True),
        "epochs": IntRange(type="int", low=1, high=30, log=True),
    }

    def evaluate(p):  # accuracy saturates with epochs, faster for small batches; power only costs
        accuracy = 1 - math.exp(-p["epochs"] * 16 / p["batch"] / 4)
        return accuracy, p["epochs"] * (p["power"] / 100) ** 2 * (1 + p["batch"] / 256)

    searcher = AxSearcher(space, metric="accuracy", mode="max", seed=0, initial_trials=5)
    seen = []
    for _ in range(25):
        params = searcher.ask()
        seen.append((params["batch"], params["power"], params["epochs"]))
        searcher.tell(params, Outcome("completed", *evaluate(params)))
    assert len(set(seen)) == 25
    assert searcher.random_draws == 0
    # The lowest power is always cheapest here: BO learns it and uses it for most trials.
    assert sum(power == 100 for _, power, _ in seen[5:]) >= 12


def test_cost_aware_acquisition_divides_the_hypervolume_gain_by_predicted_kwh():
    """``log qNEHVI - w ln kWh``, with kWh the energy model's mean turned back from Ax's units."""
    import torch
    from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
    from botorch.models import ModelListGP, SingleTaskGP

    from tuner.search.cost_aware import CostAwareLogNEHVI

    torch.manual_seed(0)
    X = torch.rand(12, 2, dtype=torch.float64)
    accuracy = (X.sum(-1, keepdim=True) - 1) / 0.4  # both outcomes standardised, as Ax gives them
    energy = (2 * X[:, :1] - 1) / 0.6  # standardised log10 kWh: rises with x0 only
    model = ModelListGP(SingleTaskGP(X, accuracy), SingleTaskGP(X, energy))
    acqf = CostAwareLogNEHVI(
        model=model, ref_point=[-3.0, -3.0], X_baseline=X,
        objective=WeightedMCMultiOutputObjective(torch.tensor([1.0, -1.0], dtype=torch.float64)),
        cost_weight=0.7, energy_mean=-2.0, energy_std=0.3, energy_log10=True,
    )
    candidates = torch.rand(5, 1, 2, dtype=torch.float64)
    with torch.no_grad():
        weighted = acqf(candidates)
        predicted_log10_kwh = model.posterior(candidates).mean[..., 0, 1] * 0.3 - 2.0
        acqf.cost_weight = 0.0
        plain = acqf(candidates)
    assert torch.allclose(weighted - plain, -0.7 * math.log(10) * predicted_log10_kwh)
    # A cheaper candidate (smaller x0) gains relative to a dearer one with the same hypervolume outlook.
    assert torch.all(acqf.log_kwh(candidates).argsort() == predicted_log10_kwh.argsort())


def test_ax_searcher_cost_weight_cools_over_the_budget_reaches_the_acquisition_and_resumes(tmp_path, monkeypatch):
    from tuner.search import cost_aware
    from tuner.search.ax_searcher import AxSearcher
    from tuner.search.base import Outcome

    space = {"batch": Choice(type="choice", values=[8, 16, 32, 64], ordered=True),
             "epochs": IntRange(type="int", low=1, high=20, log=True)}
    weights_used = []
    forward = cost_aware.CostAwareLogNEHVI.forward
    monkeypatch.setattr(cost_aware.CostAwareLogNEHVI, "forward",
                        lambda self, X: weights_used.append(self.cost_weight) or forward(self, X))

    def run(searcher, n, history):
        for _ in range(n):
            params = searcher.ask()
            outcome = Outcome("completed", 1 - math.exp(-params["epochs"] / 4), 0.01 * params["epochs"] * params["batch"] / 8)
            searcher.tell(params, outcome)
            history.append((params, outcome))

    history = []
    searcher = AxSearcher(space, seed=0, initial_trials=4, budget_kwh=2.0)
    run(searcher, 8, history)
    spent = sum(o.energy_kwh for _, o in history)
    assert searcher.told_kwh == pytest.approx(spent)
    assert searcher.cost_weight() == pytest.approx(1 - spent / 2.0)
    # The BO steps (after 4 Sobol trials) built the acquisition with the weight of their moment.
    assert weights_used and 0 < weights_used[-1] < 1 and weights_used[0] > weights_used[-1]
    assert AxSearcher(space, seed=0).cost_weight() == 0.5  # no budget: a fixed middle weight
    searcher.max_trials = 10  # the trial budget cools it too, whichever runs out first
    assert searcher.cost_weight() == pytest.approx(max(0.0, 1 - max(spent / 2.0, 8 / 10)))
    searcher.max_trials = None

    searcher.save_state(tmp_path / "searcher.json")
    resumed = AxSearcher(space, seed=0, initial_trials=4, budget_kwh=2.0)
    resumed.resume(history, tmp_path / "searcher.json")
    assert resumed.told_kwh == pytest.approx(spent)
    weights_used.clear()
    run(resumed, 1, history)
    assert weights_used and weights_used[-1] == pytest.approx(1 - spent / 2.0)


def test_ax_waits_when_every_initial_trial_is_running_and_draws_when_none_is():
    """Eight trials at once: once Ax's whole initial design is running, Ax refuses to propose
    until a result comes (``DataRequiredError``). The searcher waits (``None``) instead of
    ending the study; with nothing running it would wait for ever, so it draws instead."""
    from tuner.search.ax_searcher import AxSearcher
    from tuner.search.base import Outcome

    space = {"x": FloatRange(type="float", low=0, high=1), "y": FloatRange(type="float", low=0, high=1)}
    searcher = AxSearcher(space, metric="accuracy", mode="max", seed=0, initial_trials=4)
    running = [searcher.ask() for _ in range(4)]
    assert all(isinstance(p, dict) for p in running)
    assert searcher.ask() is None  # the fifth slot waits for a result
    for params in running:
        searcher.tell(params, Outcome("failed", error="boom"))
    assert isinstance(searcher.ask(), dict)  # nothing runs and no data: a draw, not a hang


def _rule_space() -> dict:
    space = {f"b{i}": Choice(type="choice", values=[False, True]) for i in range(6)}
    return space | {c: Choice(type="choice", values=["x", "y", "z"]) for c in ("c0", "c1")}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_failure_model_learns_an_interaction_rule_and_predicts_it_on_unseen_configurations(seed):
    """Failures follow a rule, "c0 = x without bit 3", as in the suite's ``binary-infeasible``.
    From 60 random trials of 576 configurations (about 10 failing) the model must flag every
    unseen configuration the rule fails and none it spares. The kernel estimate it replaced
    (bandwidth 0.25 on normalised distance) caught 1-8 % of them: it only knew neighbours."""
    import itertools

    from tuner.search.failure_model import FailureModel

    space = _rule_space()
    configs = [dict(zip(space, v, strict=True)) for v in itertools.product(*(p.values for p in space.values()))]
    order = np.random.default_rng(seed).permutation(len(configs))
    train, unseen = [configs[i] for i in order[:60]], [configs[i] for i in order[60:]]

    def fails(p):
        return p["c0"] == "x" and not p["b3"]

    model = FailureModel(space)
    for p in train:
        model.add(p, failed=fails(p))
    flagged = np.array([model.likely_fails(p) for p in unseen])
    truth = np.array([fails(p) for p in unseen])
    assert flagged[truth].all()
    assert not flagged[~truth].any()
    assert model.failure_probability({**unseen[0], "c0": "y", "b3": False}) < model.threshold  # the bit alone is fine
    assert model.failure_probability({**unseen[0], "c0": "x", "b3": True}) < model.threshold  # the choice alone too

    doomed = next(p for p in unseen if fails(p))
    repaired = model.repair(doomed, np.random.default_rng(0), taken=lambda c: False)
    assert repaired is not None and not fails(repaired)  # c0 changed, or bit 3 on
    assert sum(repaired[k] != doomed[k] for k in space) == 1


def test_failure_model_judges_nothing_before_a_failure_and_is_fitted_once_per_data():
    from tuner.search.failure_model import FailureModel

    space = _rule_space()
    model = FailureModel(space)
    p = {name: param.values[0] for name, param in space.items()}
    assert model.failure_probability(p) == 0.5
    model.add(p, failed=False)
    assert not model.likely_fails({**p, "c0": "y"})
    model.add({**p, "c0": "y"}, failed=True)
    assert model.likely_fails({**p, "c0": "y"})  # failed before
    fit = model._fit
    model.failure_probability({**p, "c1": "z"})
    assert model._fit is not None and (fit is None or model._fit is fit)
    first = model._fit
    model.failure_probability({**p, "b0": True})
    assert model._fit is first  # no refit without new data
