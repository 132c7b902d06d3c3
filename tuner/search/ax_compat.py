"""Every use greentune makes of Ax and BoTorch internals, checked against the pinned Ax.

The ``bo`` searcher relies on a few things Ax 1.3.1 does not expose: a module global it
reads when it picks the acquisition optimiser, ``Surrogate.fit`` swapped for a step, the
settings of a built generation node, ``Client``'s experiment and snapshot, and a BoTorch
input constructor whose signature is rewritten. Each of these would break silently (a
slower step, a cold fit, a plain acquisition) rather than loudly if Ax changed, so they
all live here, behind small functions, and :func:`check_compatibility` runs on import:
a different Ax, or one without what is patched here, raises :class:`AxCompatibilityError`.
``tests/test_ax_compat.py`` checks that each patch still takes effect.

This module imports Ax; it is imported only when an Ax searcher is built.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tuner.errors import AxCompatibilityError

if TYPE_CHECKING:
    from ax import Client
    from ax.core.experiment import Experiment
    from ax.generation_strategy.generation_strategy import GenerationStrategy
    from ax.generation_strategy.generator_spec import GeneratorSpec

__all__ = [
    "PINNED_AX_VERSION",
    "AxCompatibilityError",
    "bo_acquisition_class",
    "bo_acquisition_options",
    "bo_model_gen_options",
    "check_compatibility",
    "configure_bo_node",
    "discrete_local_search",
    "experiment",
    "generation_strategy",
    "json_snapshot",
    "on_bo_node",
    "register_for_json_snapshots",
    "register_input_constructor",
    "surrogate_fit_routed_through",
]

PINNED_AX_VERSION = "1.3.1"  # as pinned in pyproject.toml

_ACQUISITION = "ax.generators.torch.botorch_modular.acquisition"
_SURROGATE = "ax.generators.torch.botorch_modular.surrogate"
_INPUT_CONSTRUCTORS = "botorch.acquisition.input_constructors"

SurrogateFitHook = Callable[..., None]
"""Called as ``hook(original_fit, surrogate, datasets, search_space_digest, **kwargs)``."""


# --- the check ------------------------------------------------------------------------


def installed_ax_version() -> str:
    try:
        return importlib.metadata.version("ax-platform")
    except importlib.metadata.PackageNotFoundError:
        return "none"


def check_compatibility() -> None:
    """Raise :class:`AxCompatibilityError` unless Ax is the pinned version with all that is patched here.

    Cheap (attribute and signature look-ups on modules a BO step imports anyway), so it
    runs every time this module is imported.
    """
    problems = [] if installed_ax_version() == PINNED_AX_VERSION else ["a different version"]
    problems += _missing()
    if problems:
        raise _mismatch(problems)


def _missing() -> list[str]:
    """What this module patches or reads that the installed Ax and BoTorch lack."""
    missing: list[str] = []

    def module(name: str) -> ModuleType | None:
        try:
            return importlib.import_module(name)
        except ImportError:
            missing.append(f"module {name}")
            return None

    def require(owner: Any, owner_name: str, *attributes: str) -> None:
        if owner is not None:
            missing.extend(f"{owner_name}.{a}" for a in attributes if not hasattr(owner, a))

    def require_parameters(function: Any, function_name: str, *names: str) -> None:
        if function is not None:
            parameters = inspect.signature(function).parameters
            missing.extend(f"parameter {n} of {function_name}" for n in names if n not in parameters)

    client = module("ax.api.client")
    require(getattr(client, "Client", None), "ax.Client", "_experiment", "_generation_strategy", "_to_json_snapshot")

    acquisition = module(_ACQUISITION)
    require(acquisition, _ACQUISITION, "MAX_CHOICES_ENUMERATE", "optimize_acqf_discrete_local_search",
            "determine_optimizer")
    chooser = getattr(acquisition, "determine_optimizer", None)
    code = getattr(chooser, "__code__", None)
    if chooser is not None and (code is None or "MAX_CHOICES_ENUMERATE" not in code.co_names):
        missing.append(f"{_ACQUISITION}.determine_optimizer reading the global MAX_CHOICES_ENUMERATE")

    surrogate = getattr(module(_SURROGATE), "Surrogate", None)
    require(surrogate, "Surrogate", "fit", "model")
    require_parameters(getattr(surrogate, "fit", None), "Surrogate.fit",
                       "datasets", "search_space_digest", "state_dict")

    node = getattr(module("ax.generation_strategy.generation_node"), "GenerationNode", None)
    require_parameters(node, "GenerationNode", "generator_specs", "should_deduplicate")
    spec = getattr(module("ax.generation_strategy.generator_spec"), "GeneratorSpec", None)
    if spec is not None:
        fields = {f.name for f in dataclasses.fields(spec)} if dataclasses.is_dataclass(spec) else set()
        missing.extend(f"GeneratorSpec.{f}" for f in ("generator_kwargs", "generator_gen_kwargs") if f not in fields)
    require(module("ax.adapter.registry"), "ax.adapter.registry", "Cont_X_trans", "Y_trans")
    require(module("ax.storage.botorch_modular_registry"), "ax.storage.botorch_modular_registry",
            "register_acquisition_function")
    require(module(_INPUT_CONSTRUCTORS), _INPUT_CONSTRUCTORS, "acqf_input_constructor",
            "allow_only_specific_variable_kwargs", "construct_inputs_qLogNEHVI")
    return missing


def _mismatch(problems: list[str]) -> AxCompatibilityError:
    return AxCompatibilityError(
        f"greentune's Ax integration is pinned to ax-platform {PINNED_AX_VERSION}, "
        f"installed is {installed_ax_version()} ({'; '.join(problems)}); "
        f"install ax-platform=={PINNED_AX_VERSION}"
    )


# --- ax.Client ------------------------------------------------------------------------


def experiment(client: Client) -> Experiment:
    """The client's experiment: its trials and data (Ax 1.3.1's ``Client`` has no public accessor)."""
    return client._experiment  # noqa: SLF001


def generation_strategy(client: Client) -> GenerationStrategy:
    """The client's generation strategy, e.g. for its name in reports."""
    return client._generation_strategy  # noqa: SLF001


def json_snapshot(client: Client) -> dict[str, Any]:
    """What ``Client.save_to_json_file`` writes, as a dict, so that the caller can write it atomically."""
    return client._to_json_snapshot()  # noqa: SLF001


# --- the BO node of a generation strategy -----------------------------------------------


def configure_bo_node(
    strategy: GenerationStrategy,
    *,
    model_gen_options: dict[str, Any],
    relax_discrete_parameters: bool,
    deduplicate: bool,
) -> None:
    """Set the acquisition settings of ``strategy``'s last node (the BO one) after it was built.

    Ax's dispatch (``choose_generation_strategy``) builds the nodes with its own settings
    and has no setter for them. ``model_gen_options`` replaces the node's optimiser and
    acquisition options; ``relax_discrete_parameters`` models ints and choices as
    continuous values (Ax rounds the candidate back onto the grid), so that plain
    ``optimize_acqf`` runs instead of the mixed optimisers; ``deduplicate=False`` stops Ax
    refitting to replace a repeated arm, for a caller that handles repeats itself.
    """
    from ax.adapter.registry import Cont_X_trans, Y_trans

    node = _bo_node(strategy)
    node.should_deduplicate = deduplicate
    spec = _only_spec(node)
    if relax_discrete_parameters:
        spec.generator_kwargs["transforms"] = [*Cont_X_trans, *Y_trans]
    spec.generator_gen_kwargs["model_gen_options"] = model_gen_options


def bo_acquisition_class(strategy: GenerationStrategy) -> type | None:
    """The BoTorch acquisition class ``strategy``'s BO node was built with, if one was named."""
    return _only_spec(_bo_node(strategy)).generator_kwargs.get("botorch_acqf_class")


def bo_model_gen_options(strategy: GenerationStrategy) -> dict[str, Any]:
    """The live ``model_gen_options`` of ``strategy``'s BO node (optimiser and acquisition options).

    Ax reads it on every step, so a change applies to the next step.
    """
    return _only_spec(_bo_node(strategy)).generator_gen_kwargs.setdefault("model_gen_options", {})


def on_bo_node(strategy: GenerationStrategy) -> bool:
    """Whether ``strategy`` generates from its BO node now (rather than its initial design)."""
    return strategy.current_node is _bo_node(strategy)


def bo_acquisition_options(strategy: GenerationStrategy) -> dict[str, Any]:
    """The live keyword options the BO node passes to the acquisition's input constructor.

    Updating this dict changes the next step's acquisition: Ax reads it on every step.
    """
    options = _only_spec(_bo_node(strategy)).generator_gen_kwargs.setdefault("model_gen_options", {})
    return options.setdefault("acquisition_function_kwargs", {})


def _bo_node(strategy: GenerationStrategy) -> Any:
    nodes = getattr(strategy, "_nodes", None)
    if not nodes:
        raise _mismatch(["missing GenerationStrategy._nodes"])
    node = nodes[-1]
    if not hasattr(node, "generator_specs") or not hasattr(node, "should_deduplicate"):
        raise _mismatch(["missing GenerationNode.generator_specs or .should_deduplicate"])
    return node


def _only_spec(node: Any) -> GeneratorSpec:
    return node.generator_specs[0]


# --- a BO step --------------------------------------------------------------------------


@contextmanager
def discrete_local_search(enabled: bool = True) -> Iterator[None]:
    """Make Ax search a fully discrete space locally instead of scoring every point of it.

    Ax's ``determine_optimizer`` scores every point of a discrete space with at most
    ``MAX_CHOICES_ENUMERATE`` points, and only above that runs BoTorch's
    ``optimize_acqf_discrete_local_search`` (which also avoids tried and pending points).
    Ax reads the limit as a global of its acquisition module when it picks the optimiser,
    so it is lowered to 0 there for the step and restored after, even if the step raises.
    """
    if not enabled:
        yield
        return
    acquisition = importlib.import_module(_ACQUISITION)
    before = acquisition.MAX_CHOICES_ENUMERATE
    acquisition.MAX_CHOICES_ENUMERATE = 0
    try:
        yield
    finally:
        acquisition.MAX_CHOICES_ENUMERATE = before


@contextmanager
def surrogate_fit_routed_through(hook: SurrogateFitHook | None) -> Iterator[None]:
    """Route every ``Surrogate.fit`` of the step through ``hook``, which is given Ax's own fit.

    Ax 1.3.1 builds a new surrogate inside each step and offers no way to hand a fit its
    starting point (``Surrogate.fit``'s ``state_dict``) from outside, so the method is
    swapped on the class for the step and restored after, even if the step raises.
    ``None`` leaves Ax's fit alone.
    """
    if hook is None:
        yield
        return
    from ax.generators.torch.botorch_modular.surrogate import Surrogate

    original = Surrogate.fit

    def fit(surrogate: Any, datasets: Any, search_space_digest: Any, **kwargs: Any) -> None:
        hook(original, surrogate, datasets, search_space_digest, **kwargs)

    Surrogate.fit = fit  # type: ignore[method-assign]
    try:
        yield
    finally:
        Surrogate.fit = original  # type: ignore[method-assign]


# --- acquisition registration -----------------------------------------------------------


def register_input_constructor(
    acqf_class: type,
    constructor: Callable[..., dict[str, Any]],
    *,
    extends: Callable[..., dict[str, Any]],
    extra_keywords: Mapping[str, Any],
) -> None:
    """Make ``constructor`` the input constructor BoTorch dispatches to for ``acqf_class``.

    ``constructor`` forwards ``**kwargs`` to ``extends`` and adds ``extra_keywords``
    (name -> default). BoTorch's registry wraps it in a filter that passes only the
    keywords its signature names, silently dropping or rejecting the rest, and Ax sends
    every acquisition option through that filter; so its signature is rewritten to name
    ``extends``' parameters and the extra ones.
    """
    from botorch.acquisition.input_constructors import acqf_input_constructor

    base = inspect.signature(extends)
    constructor.__signature__ = base.replace(parameters=[  # type: ignore[attr-defined]
        *base.parameters.values(),
        *(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
          for name, default in extra_keywords.items()),
    ])
    acqf_input_constructor(acqf_class)(constructor)


def register_for_json_snapshots(acqf_class: type) -> None:
    """Let Ax's JSON snapshots (a study's ``searcher.json``) name ``acqf_class`` and load it back."""
    from ax.storage.botorch_modular_registry import register_acquisition_function

    register_acquisition_function(acqf_class)


check_compatibility()
