"""The seams between greentune and Ax's internals: each patch in ``tuner.search.ax_compat``
still takes effect where Ax reads it, is undone after the step, and a different Ax is refused."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tuner.config import Choice, FloatRange, IntRange
from tuner.errors import AxCompatibilityError, GreentuneError
from tuner.search import ax_compat
from tuner.search.ax_searcher import AxSearcher
from tuner.search.base import Outcome
from tuner.search.cost_aware import CostAwareLogNEHVI

ROOT = Path(__file__).resolve().parents[1]

DISCRETE = {  # 4 x 4 x 30 = 480 points: Ax would score every one of them
    "batch": Choice(type="choice", values=[16, 32, 64, 128], ordered=True),
    "power": Choice(type="choice", values=[100, 150, 200, 250], ordered=True),
    "epochs": IntRange(type="int", low=1, high=30, log=True),
}
MIXED = {
    "lr": FloatRange(type="float", low=1e-4, high=1e-1, log=True),
    "width": IntRange(type="int", low=8, high=64),
    "opt": Choice(type="choice", values=["adam", "sgd"]),
}


def _outcome(params: dict) -> Outcome:
    """Some accuracy, and an energy that rises with every numeric parameter."""
    numbers = [float(v) for v in params.values() if isinstance(v, int | float)]
    size = sum(math.log(1 + abs(v)) for v in numbers)
    return Outcome("completed", 1 - math.exp(-size / 4), 0.001 * (1 + size) ** 2)


def _run(searcher: AxSearcher, steps: int, after_step=lambda: None) -> list[Outcome]:
    told = []
    for _ in range(steps):
        params = searcher.ask()
        after_step()
        outcome = _outcome(params)
        searcher.tell(params, outcome)
        told.append(outcome)
    return told


# --- the discrete local search ------------------------------------------------------------


def test_a_discrete_bo_step_runs_local_search_with_the_limit_lowered_then_restores_it(monkeypatch):
    from ax.generators.torch.botorch_modular import acquisition
    from botorch.optim import optimize_mixed

    limit = acquisition.MAX_CHOICES_ENUMERATE
    assert limit == optimize_mixed.MAX_CHOICES_ENUMERATE > 4 * 4 * 30  # left alone, Ax enumerates DISCRETE
    local_searches, enumerations = [], []
    local_search, enumerate_all = acquisition.optimize_acqf_discrete_local_search, acquisition.optimize_acqf_discrete

    def spy_local_search(**kwargs):
        local_searches.append({"limit": acquisition.MAX_CHOICES_ENUMERATE, **kwargs})
        return local_search(**kwargs)

    monkeypatch.setattr(acquisition, "optimize_acqf_discrete_local_search", spy_local_search)
    monkeypatch.setattr(acquisition, "optimize_acqf_discrete",
                        lambda *a, **k: enumerations.append(k) or enumerate_all(*a, **k))
    searcher = AxSearcher(DISCRETE, seed=0, initial_trials=3)
    _run(searcher, 6, after_step=lambda: limit == acquisition.MAX_CHOICES_ENUMERATE or pytest.fail("limit not restored"))

    assert len(local_searches) == 3  # every BO step after the 3 initial trials
    assert not enumerations
    assert all(call["limit"] == 0 for call in local_searches)  # lowered where Ax reads it, during the step
    # The fast step's settings reach the optimiser, and tried points are avoided.
    assert all(call["num_restarts"] == 4 and call["raw_samples"] == 256 for call in local_searches)
    assert [len(call["X_avoid"]) for call in local_searches] == [3, 4, 5]
    assert acquisition.MAX_CHOICES_ENUMERATE == limit


def test_the_lowered_limit_is_what_ax_reads_when_it_picks_the_optimizer():
    from ax.core.search_space import SearchSpaceDigest
    from ax.generators.torch.botorch_modular import acquisition

    choices = {0: [0.0, 1.0, 2.0], 1: [0.0, 1.0, 2.0]}
    digest = SearchSpaceDigest(feature_names=["a", "b"], bounds=[(0.0, 2.0), (0.0, 2.0)],
                               ordinal_features=[0, 1], discrete_choices=choices)

    def chosen() -> str:
        return acquisition.determine_optimizer(digest, discrete_choices=choices)

    assert chosen() == "optimize_acqf_discrete"
    with ax_compat.discrete_local_search():
        assert chosen() == "optimize_acqf_discrete_local_search"
    with ax_compat.discrete_local_search(enabled=False):
        assert chosen() == "optimize_acqf_discrete"
    with pytest.raises(RuntimeError), ax_compat.discrete_local_search():
        raise RuntimeError("a step that fails")
    assert chosen() == "optimize_acqf_discrete"


def test_a_mixed_bo_step_is_relaxed_to_optimize_acqf_with_the_fast_settings_and_the_cost_aware_acquisition(monkeypatch):
    """``configure_bo_node`` took effect: ints and choices relaxed (plain ``optimize_acqf``, not
    the mixed optimisers), fewer restarts and MC samples, and Ax's deduplication off; and the
    acquisition optimised is the cost-aware one, built with this step's weight and energy scale."""
    from ax.generators.torch.botorch_modular import acquisition

    optimised, mixed = [], []
    optimize_acqf = acquisition.optimize_acqf

    def spy(**kwargs):
        acqf = kwargs["acq_function"]
        optimised.append({**kwargs, "acqf_class": type(acqf), "cost_weight": acqf.cost_weight,
                          "energy_mean": acqf.energy_mean, "energy_std": acqf.energy_std,
                          "mc_samples": acqf.sampler.sample_shape})
        return optimize_acqf(**kwargs)

    monkeypatch.setattr(acquisition, "optimize_acqf", spy)
    for name in ("optimize_acqf_mixed", "optimize_acqf_mixed_alternating"):
        monkeypatch.setattr(acquisition, name, lambda *a, **k: mixed.append(k) or pytest.fail("mixed optimiser"))
    searcher = AxSearcher(MIXED, seed=0, initial_trials=3, budget_kwh=1.0)
    told = _run(searcher, 3)
    weight = searcher.cost_weight()
    told += _run(searcher, 1)

    assert len(optimised) == 1 and not mixed
    call = optimised[0]
    assert call["num_restarts"] == 2 and call["raw_samples"] == 128 and call["options"]["maxiter"] == 60
    assert call["mc_samples"] == torch.Size([32])
    assert call["acqf_class"] is CostAwareLogNEHVI
    log10_kwh = [math.log10(o.energy_kwh) for o in told[:3]]
    assert call["cost_weight"] == pytest.approx(weight) and 0 < weight < 1
    assert call["energy_mean"] == pytest.approx(sum(log10_kwh) / 3)
    assert call["energy_std"] == pytest.approx(float(torch.tensor(log10_kwh).std()))
    assert ax_compat.generation_strategy(searcher.client)._nodes[-1].should_deduplicate is False


# --- the warm-started fits ----------------------------------------------------------------


def test_each_warm_fit_starts_from_the_previous_fits_state_and_surrogate_fit_is_restored(monkeypatch):
    from ax.generators.torch.botorch_modular.surrogate import Surrogate

    fits = []  # (state_dict the fit was given, the model's state_dict after it)
    fit = Surrogate.fit

    def spy(surrogate, datasets, search_space_digest, **kwargs):
        fit(surrogate, datasets, search_space_digest, **kwargs)
        after = {name: value.detach().clone() for name, value in surrogate.model.state_dict().items()}
        fits.append((kwargs.get("state_dict"), after))

    monkeypatch.setattr(Surrogate, "fit", spy)
    space = {"x": FloatRange(type="float", low=0, high=1), "y": FloatRange(type="float", low=0, high=1)}
    searcher = AxSearcher(space, seed=0, initial_trials=3)
    _run(searcher, 14, after_step=lambda: Surrogate.__dict__["fit"] is spy or pytest.fail("fit not restored"))

    warm = [i for i, (given, _) in enumerate(fits) if given is not None]
    assert len(fits) == 11 == searcher._fits.warm + searcher._fits.cold  # one fit per BO step
    assert len(warm) == searcher._fits.warm >= 3 and 0 not in warm
    for i in warm:
        given, previous = fits[i][0], fits[i - 1][1]
        assert given.keys() == previous.keys()
        assert all(torch.equal(given[name], previous[name]) for name in given)


def test_the_fit_hook_gets_axs_fit_and_surrogate_fit_is_restored_when_the_step_raises():
    from ax.generators.torch.botorch_modular.surrogate import Surrogate

    original = Surrogate.fit
    calls = []
    with pytest.raises(RuntimeError), ax_compat.surrogate_fit_routed_through(lambda *a, **k: calls.append(a)):
        assert Surrogate.fit is not original
        Surrogate.fit("surrogate", ["datasets"], "digest")
        raise RuntimeError("a step that fails")
    assert calls == [(original, "surrogate", ["datasets"], "digest")]
    assert Surrogate.fit is original
    with ax_compat.surrogate_fit_routed_through(None):
        assert Surrogate.fit is original


# --- the cost-aware acquisition's registration --------------------------------------------


def test_the_cost_aware_input_constructor_takes_every_keyword_ax_passes(monkeypatch):
    """BoTorch hands a registered constructor only the keywords its signature names, and
    rejects others: the rewritten signature must name qLogNEHVI's and the cost settings."""
    from botorch.acquisition.input_constructors import (
        construct_inputs_qLogNEHVI,
        get_acqf_input_constructor,
    )

    from tuner.search import cost_aware

    signature = inspect.signature(cost_aware.construct_inputs_cost_aware).parameters
    assert set(signature) == set(inspect.signature(construct_inputs_qLogNEHVI).parameters) | set(
        cost_aware._COST_DEFAULTS)
    received = {}
    monkeypatch.setattr(cost_aware, "construct_inputs_qLogNEHVI", lambda **kw: received.update(kw) or {"base": 1})
    constructor = get_acqf_input_constructor(CostAwareLogNEHVI)
    # What Ax 1.3.1's Acquisition passes (model, data, thresholds...), plus the fast step's options.
    inputs = constructor(
        training_data="data", bounds="bounds", model="model", X_baseline="X", X_pending="pending",
        ref_point="ref", constraints="constraints", constraints_tuple="tuple", objective="objective",
        posterior_transform="transform", mc_samples=32,
        cost_weight=0.3, energy_mean=-2.0, energy_std=0.5, energy_log10=False,
    )
    assert inputs == {"base": 1, "cost_weight": 0.3, "energy_mean": -2.0, "energy_std": 0.5, "energy_log10": False}
    assert received["model"] == "model" and received["X_baseline"] == "X" and received["mc_samples"] == 32
    assert not set(received) & set(cost_aware._COST_DEFAULTS)


def test_a_snapshot_names_the_cost_aware_acquisition_and_loads_it_back(tmp_path):
    from ax import Client

    searcher = AxSearcher(MIXED, seed=0)
    searcher.save_state(tmp_path / "searcher.json")
    assert "CostAwareLogNEHVI" in (tmp_path / "searcher.json").read_text()
    loaded = Client.load_from_json_file(str(tmp_path / "searcher.json"))
    assert ax_compat.bo_acquisition_class(ax_compat.generation_strategy(loaded)) is CostAwareLogNEHVI


# --- the check against the pinned Ax ------------------------------------------------------


def test_the_installed_ax_is_the_version_pinned_in_pyproject():
    pins = re.findall(r'"ax-platform==([^"]+)"', (ROOT / "pyproject.toml").read_text())
    assert pins == [ax_compat.PINNED_AX_VERSION]
    assert ax_compat.installed_ax_version() == ax_compat.PINNED_AX_VERSION
    ax_compat.check_compatibility()


def _mismatch_message() -> str:
    with pytest.raises(AxCompatibilityError) as raised:
        ax_compat.check_compatibility()
    assert isinstance(raised.value, GreentuneError) and isinstance(raised.value, ImportError)
    message = str(raised.value)
    assert "\n" not in message and "1.3.1" in message
    return message


def _fake_ax_version(monkeypatch, version: str) -> None:
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: version if name == "ax-platform" else real(name))


def test_another_ax_version_is_refused_with_both_versions_named(monkeypatch):
    _fake_ax_version(monkeypatch, "1.4.0")
    message = _mismatch_message()
    assert "installed is 1.4.0" in message and "ax-platform==1.3.1" in message


def test_importing_ax_compat_runs_the_check(monkeypatch):
    _fake_ax_version(monkeypatch, "1.4.0")
    monkeypatch.delitem(sys.modules, "tuner.search.ax_compat")
    with pytest.raises(AxCompatibilityError, match="1.4.0"):
        importlib.import_module("tuner.search.ax_compat")


def _fit_without_state_dict(self, datasets, search_space_digest):  # noqa: ANN001, ANN202
    pass


def _optimizer_chooser_without_the_global(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
    return "optimize_acqf"


@pytest.mark.parametrize(("module", "owner", "attribute", "replacement", "named"), [
    ("ax.generators.torch.botorch_modular.acquisition", None, "MAX_CHOICES_ENUMERATE", None, "MAX_CHOICES_ENUMERATE"),
    ("ax.generators.torch.botorch_modular.acquisition", None, "determine_optimizer",
     _optimizer_chooser_without_the_global, "reading the global MAX_CHOICES_ENUMERATE"),
    ("ax.generators.torch.botorch_modular.surrogate", "Surrogate", "fit", _fit_without_state_dict,
     "parameter state_dict of Surrogate.fit"),
    ("ax.api.client", "Client", "_experiment", None, "ax.Client._experiment"),
    ("ax.storage.botorch_modular_registry", None, "register_acquisition_function", None,
     "register_acquisition_function"),
    ("botorch.acquisition.input_constructors", None, "allow_only_specific_variable_kwargs", None,
     "allow_only_specific_variable_kwargs"),
])
def test_a_missing_or_changed_internal_is_refused_and_named(monkeypatch, module, owner, attribute, replacement, named):
    target = importlib.import_module(module)
    if owner:
        target = getattr(target, owner)
    if replacement is None:
        monkeypatch.delattr(target, attribute)
    else:
        monkeypatch.setattr(target, attribute, replacement)
    message = _mismatch_message()
    assert named in message and "installed is 1.3.1" in message


def test_a_strategy_without_the_expected_nodes_is_refused():
    with pytest.raises(AxCompatibilityError, match="GenerationStrategy._nodes"):
        ax_compat.bo_acquisition_class(object())  # type: ignore[arg-type]


# --- one module for all of it -------------------------------------------------------------

INTERNALS = re.compile(
    r"client\._\w+|\._experiment\b|\._nodes\b|_to_json_snapshot|MAX_CHOICES_ENUMERATE"
    r"|Surrogate\.fit\s*=|__signature__|register_acquisition_function|acqf_input_constructor"
)


def test_no_other_module_of_tuner_touches_ax_internals():
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "tuner").rglob("*.py")) if path.name != "ax_compat.py"
        for number, line in enumerate(path.read_text().splitlines(), 1) if INTERNALS.search(line)
    ]
    assert not offenders


def test_importing_tuner_and_the_searchers_module_imports_no_ax():
    code = ("import sys, tuner, tuner.search.ax_searcher; "
            "assert not {'ax', 'botorch', 'tuner.search.ax_compat'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)
