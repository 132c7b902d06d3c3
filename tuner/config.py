"""The study config: one pydantic model for Python dicts, YAML files and objects alike.

Everything a study needs is validated here, before Ray starts or any energy is spent.
Unknown keys are rejected with the nearest valid key as a suggestion, because a typo
in a budget field silently falling back to a default would waste real energy.
"""

from __future__ import annotations

import difflib
import importlib
import math
import os
import posixpath
import re
import types
import typing
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tuner.errors import ConfigError, GridSizeWarning
from tuner.redact import redact_obj
from tuner.study.record import ENERGY_METRIC as ENERGY_METRIC  # the second objective of every study
from tuner.study.record import RESERVED_NAMES, RESERVED_PREFIXES, is_reserved_result_key

POWER_LIMIT_PARAM = "gpu_power_limit_w"  # applied to the trial's GPUs through NVML


class _Strict(BaseModel):
    """Base model that rejects unknown keys and suggests the nearest valid one."""

    # allow_inf_nan=False: a NaN or infinite number (budget, PUE, watts, price...) is
    # always a mistake, and NaN slips through every ``ge``/``gt`` bound.
    # Unknown keys are refused once, by ``_reject_unknown_keys`` (its message suggests the
    # nearest valid key); the schema still says no other key is allowed.
    model_config = ConfigDict(extra="ignore", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False,
                              json_schema_extra={"additionalProperties": False})

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            valid = set(cls.model_fields)
            for key in data:
                if key not in valid:
                    hint = difflib.get_close_matches(str(key), sorted(valid), n=1, cutoff=0.5)
                    suggestion = f"; did you mean '{hint[0]}'?" if hint else ""
                    raise ValueError(
                        f"unknown key '{key}'{suggestion} Valid keys: {', '.join(sorted(valid))}"
                    )
                # pydantic would read `budget_kwh: true` as 1 kWh: a YAML slip must not quietly
                # become a budget, a bound or a seed
                if _bool_as_number(cls.model_fields[key].annotation, data[key]):
                    raise _FieldError(str(key), f"true/false is not a number (got {data[key]!r})")
        return data


class _FieldError(ValueError):
    """A problem found by a model-level check that belongs to one field: the message names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _bool_as_number(annotation: Any, value: Any) -> bool:
    """Whether ``value`` holds a bool where ``annotation`` wants a number, not a bool."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _bool_as_number(get_args(annotation)[0], value)
    if isinstance(value, bool):
        kinds = _leaf_types(annotation)
        return bool(kinds & {int, float}) and not kinds & {bool, Any}
    if isinstance(value, Mapping) and origin is dict:
        value_type = get_args(annotation)[1]
        return any(_bool_as_number(value_type, v) for v in value.values())
    if origin in (typing.Union, types.UnionType):
        return any(_bool_as_number(arg, value) for arg in get_args(annotation)
                   if get_origin(arg) in (dict, Annotated))
    return False


def _leaf_types(annotation: Any) -> set[Any]:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _leaf_types(get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return set().union(*(_leaf_types(arg) for arg in get_args(annotation)))
    return {annotation}


# --------------------------------------------------------------------------- search space


class FloatRange(_Strict):
    """A float in ``[low, high]``, optionally searched on a log scale."""

    type: Literal["float"]
    low: float = Field(description="Lower bound; > 0 on a log scale.")
    high: float = Field(description="Upper bound; greater than `low`.")
    log: bool = Field(False, description="Search on a log scale.")

    @model_validator(mode="after")
    def _check_bounds(self) -> FloatRange:
        _check_range(self.low, self.high, self.log)
        return self


class IntRange(_Strict):
    """An integer in ``[low, high]`` (both inclusive), optionally on a log scale."""

    type: Literal["int"]
    low: int = Field(description="Lower bound, inclusive; within +/-2^53; > 0 on a log scale.")
    high: int = Field(description="Upper bound, inclusive; greater than `low`.")
    log: bool = Field(False, description="Search on a log scale.")

    @model_validator(mode="after")
    def _check_bounds(self) -> IntRange:
        _check_range(self.low, self.high, self.log)
        return self


class Choice(_Strict):
    """One of ``values``. ``ordered: true`` tells the optimiser that neighbours are similar."""

    type: Literal["choice"]
    values: list[bool | int | float | str] = Field(
        description="At least one value, unique, of one type (ints and floats may mix)."
    )
    ordered: bool = Field(False, description="Neighbouring values are similar (e.g. batch sizes).")

    @field_validator("values")
    @classmethod
    def _check_values(cls, values: list[Any]) -> list[Any]:
        if len(values) < 1:
            raise ValueError("a choice needs at least one value")
        if len(values) > MAX_CHOICE_VALUES:  # beyond this a choice is a range in disguise
            raise ValueError(
                f"a choice may hold at most {MAX_CHOICE_VALUES:,} values (got {len(values):,}); "
                "use an int or float range instead"
            )
        if len({repr(v) for v in values}) != len(values):
            raise ValueError(f"choice values must be unique, got {values}")
        kinds = {type(v) for v in values}
        if len(kinds) > 1 and not kinds <= {int, float}:
            raise ValueError(f"choice values must share one type, got {values}")
        return values


class Fixed(_Strict):
    """A constant passed to every trial unchanged."""

    type: Literal["fixed"]
    value: Any = Field(
        description="Any value. A plain scalar or list in the search space is shorthand for this; "
        "a mapping must be written this way."
    )


_PARAMETER_KINDS = {"float": FloatRange, "int": IntRange, "choice": Choice, "fixed": Fixed}
_SPEC_KEYS = sorted({key for model in _PARAMETER_KINDS.values() for key in model.model_fields})
_FIXED_MAPPING = "a fixed mapping is written {type: fixed, value: {...}}"


def _as_parameter_spec(value: Any) -> Any:
    """A parameter's spec, checked before pydantic picks its kind by ``type``.

    Plain scalars and lists are shorthand for fixed values. A mapping is always a spec and
    must say its ``type``: read as a fixed value, a misspelt spec (``{tpye: float, ...}``)
    would reach every trial as a dict, and every trial would fail and spend energy for
    nothing. A mapping meant as a fixed value is written ``{type: fixed, value: {...}}``.
    """
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, Mapping):
        return {"type": "fixed", "value": value}
    if "type" not in value:
        near = [(key, hint[0]) for key in value if key not in _SPEC_KEYS
                for hint in [difflib.get_close_matches(str(key).lower(), _SPEC_KEYS, n=1, cutoff=0.6)] if hint]
        near.sort(key=lambda pair: pair[1] != "type")  # a misspelt ``type`` is the one that matters
        hint = f"unknown key '{near[0][0]}'; did you mean '{near[0][1]}'? " if near else ""
        raise ValueError(f"{hint}a parameter spec needs 'type' (one of {', '.join(_PARAMETER_KINDS)}); "
                         f"{_FIXED_MAPPING.replace('{...}', '...')}")
    kind = value["type"]
    if not isinstance(kind, str) or kind not in _PARAMETER_KINDS:
        hint = difflib.get_close_matches(str(kind).lower(), list(_PARAMETER_KINDS), n=1, cutoff=0.5)
        suggestion = f"did you mean '{hint[0]}'? " if hint else ""
        raise ValueError(f"type '{kind}' is not a parameter type; {suggestion}"
                         f"use one of {', '.join(_PARAMETER_KINDS)}")
    return value


Parameter = Annotated[
    FloatRange | IntRange | Choice | Fixed, Field(discriminator="type"), BeforeValidator(_as_parameter_spec)
]


_MAX_INT_BOUND = 2**53  # integers beyond this are not exact as floats, which the optimiser uses
MAX_CHOICE_VALUES = 10_000  # any strategy; a choice this long is a range in disguise
AX_MAX_CHOICE_VALUES = 1_000  # Ax's own cap on a ChoiceParameter (bo and sobol)
MAX_SEED = 2**32 - 1  # numpy's and torch's seed range
MAX_NAME_LENGTH = 250  # MLflow's limit on a param or metric key


def _check_range(low: float, high: float, log: bool) -> None:
    if isinstance(low, int) and isinstance(high, int) and max(abs(low), abs(high)) > _MAX_INT_BOUND:
        raise ValueError(f"int bounds must lie within +/-2**53, got low={low:.3g}, high={high:.3g}")
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError("low and high must be finite")
    if low >= high:
        raise ValueError(f"low ({low}) must be less than high ({high}); use type: fixed for a constant")
    if log and low <= 0:
        raise ValueError(f"a log-scale range needs low > 0, got {low}")


# --------------------------------------------------------------------------- sections


class Resources(_Strict):
    """Resources Ray reserves for each trial."""

    cpu: float = Field(1.0, ge=0, description="CPUs per trial; must fit on one node (checked before the study starts).")
    gpu: float = Field(0.0, ge=0, description="GPUs per trial; a fraction (<= 1) shares a GPU, above 1 a whole number.")

    @model_validator(mode="after")
    def _reserves_something(self) -> Resources:
        if self.cpu == 0 and self.gpu == 0:
            raise ValueError("a trial must reserve some cpu or gpu (got cpu: 0, gpu: 0); Ray cannot place a trial "
                             "that asks for nothing")
        return self


class MlflowSettings(_Strict):
    """Where results are tracked. ``tracking_uri`` defaults to a SQLite file in ``output_dir``."""

    tracking_uri: str | None = Field(
        None, description="Default: `MLFLOW_TRACKING_URI`, else `sqlite:///<output_dir>/mlflow.db`."
    )
    experiment: str | None = Field(None, description="MLflow experiment name.")


Component = Literal["cpu", "dram", "gpu"]


class ComponentOverride(_Strict):
    """A fixed power for one component, used instead of any counter or estimate.

    Recorded as source ``user-override``; ``uncertainty`` (relative) is yours to give,
    and is recorded as unknown (NaN) without it.
    """

    watts: float = Field(ge=0, description="The component's fixed power, in W.")
    uncertainty: float | None = Field(None, ge=0, description="Relative, e.g. 0.1; default unknown (NaN).")


class EnergySettings(_Strict):
    """How trial energy is measured when the objective does not report it.

    The chain per component: a ``overrides`` entry if given; else RAPL (cpu, dram) or
    NVML (gpu); else the estimates: CPU time x ``watts_per_core`` (default: the TDP
    table in ``tuner/energy/tdp.py`` by CPU model, else 10 W) and resident GB x
    ``dram_watts_per_gb``. ``sample_interval_s`` is the sampler's period (GPU power,
    DRAM occupancy, RAPL wraparound). ``attribute_by_cpu_share`` gives each trial its
    CPU-time share of machine-wide RAPL energy. ``idle_baseline_s`` > 0 measures idle
    power that long before a study and subtracts it (counter sources only);
    ``idle_watts`` gives it directly instead.
    """

    watts_per_core: float | None = Field(
        None, gt=0, description="CPU-time estimate; default: TDP table by CPU model, else 10."
    )
    dram_watts_per_gb: float = Field(0.375, ge=0, description="DRAM estimate when RAPL has no DRAM zone.")
    report_interval_s: float = Field(2.0, gt=0, le=60, description="Trial heartbeats to the budget ledger.")
    sample_interval_s: float = Field(
        0.1, ge=0.01, le=10, description="Sampler period: GPU power, DRAM occupancy, RAPL wraparound."
    )
    attribute_by_cpu_share: bool = Field(
        True, description="Split machine-wide RAPL energy between concurrent trials by CPU time."
    )
    idle_baseline_s: float = Field(
        0.0, ge=0, le=600, description="> 0: measure idle power this long before the study, subtract it."
    )
    idle_watts: dict[Component, Annotated[float, Field(ge=0)]] | None = Field(
        None, description="Known idle power instead, e.g. `{cpu: 20.0, dram: 3.0, gpu: 45.0}`."
    )
    overrides: dict[Component, ComponentOverride] = Field(
        default_factory=dict, description="Fixed power per component: `{gpu: {watts: 250, uncertainty: 0.1}}`."
    )

    @model_validator(mode="after")
    def _one_idle_source(self) -> EnergySettings:
        if self.idle_baseline_s > 0 and self.idle_watts is not None:
            raise ValueError("give idle_baseline_s (measure it) or idle_watts (known values), not both")
        return self


CarbonProviderName = Literal["static", "csv", "ukci", "electricitymaps", "watttime"]
CarbonPolicy = Literal["none", "threshold", "flexible-start", "pause-resume"]


class ZoneCarbonSettings(_Strict):
    """Where one zone's carbon intensity comes from (``carbon.zones``): the provider options of
    ``carbon:`` itself, read per zone. ``zone`` defaults to the zone's name, so a failing
    provider falls back to that zone's own static figure rather than the world average."""

    provider: CarbonProviderName = Field("static", description="Where this zone's intensity comes from.")
    zone: str | None = Field(None, description="static / electricitymaps zone; default: the zone's name.")
    region: str | None = Field(None, description="ukci region id or watttime region.")
    g_per_kwh: float | None = Field(None, ge=0, description="static: override the table.")
    csv_path: Path | None = Field(None, description="csv: the trace file (required by csv).")
    csv_timezone: str = Field("UTC", description="csv: how to read naive timestamps.")
    step: str | None = Field(None, description='Resample the provider\'s series, e.g. "15min".')
    lifecycle: bool = Field(False, description="CSV exports / Electricity Maps: lifecycle (LCA), not direct.")
    base_url: str | None = Field(None, description="Web providers: point at a mirror or test server.")


class CarbonSettings(_Strict):
    """Where grid carbon intensity comes from, and whether trials wait for cleaner hours.

    The default (static world average, policy ``none``) only accounts CO2; it never
    delays a trial. Every live provider falls back to the static figure for ``zone``
    when it fails, and says so. Tokens come from the environment, never from this file.
    """

    provider: CarbonProviderName = Field("static", description="Where the intensity comes from.")
    zone: str | None = Field(
        None, description="static / electricitymaps zone, e.g. DE, FR, US-CAL-CISO; also picks the fallback."
    )
    region: str | None = Field(
        None, description="ukci region id 1-17 (omit for national) or watttime region (CAISO_NORTH)."
    )
    g_per_kwh: float | None = Field(None, ge=0, description="static: override the table.")
    csv_path: Path | None = Field(None, description="csv: the trace file (required by csv).")
    csv_timezone: str = Field("UTC", description="csv: how to read naive timestamps.")
    step: str | None = Field(None, description='Resample the provider\'s series, e.g. "15min", "1h".')
    lifecycle: bool = Field(False, description="CSV exports / Electricity Maps: lifecycle (LCA), not direct.")
    base_url: str | None = Field(None, description="Web providers: point at a mirror or test server.")
    timeout_s: float = Field(10.0, gt=0, description="Web providers: request timeout.")
    retries: int = Field(3, ge=0, le=10, description="Web providers: retries with backoff on errors, 429, 5xx.")
    cache_ttl_s: float = Field(300.0, ge=0, description="Web providers: how long an answer is reused.")
    deadline: str | None = Field(
        None, description='A duration, e.g. "24h": the study must finish by start + deadline. A policy needs it.'
    )
    policy: CarbonPolicy = Field("none", description="`none` only accounts; the others delay or pause trials.")
    forecast: Literal["provider", "history"] = Field(
        "provider", description="provider: its forecast API; history: a profile fitted on past days."
    )
    threshold_g_per_kwh: float | None = Field(
        None, ge=0, description="threshold / pause-resume: the level (this or threshold_percentile)."
    )
    threshold_percentile: float | None = Field(
        None, ge=0, le=100, description="threshold / pause-resume: the level as a percentile of the forecast."
    )
    min_saving: float = Field(0.0, ge=0, lt=1, description="flexible-start: wait only if it saves this share.")
    zones: dict[str, ZoneCarbonSettings] = Field(
        default_factory=dict,
        description="Placement: zone name -> its provider; a node is in zone Z when it has the custom resource `zone:Z`.",
    )
    placement: Literal["none", "lowest"] = Field(
        "none", description="`lowest`: each new trial goes to the free zone cleanest over its expected run (needs zones)."
    )
    confidence: float = Field(
        0.9, gt=0, lt=1,
        description="forecast: history: wait only for a saving that clears the forecast's past error with this confidence.",
    )

    @field_validator("deadline", "step")
    @classmethod
    def _check_duration(cls, value: str | None, info: Any) -> str | None:
        if value is not None:
            parse_duration(value, f"carbon.{info.field_name}")
        return value

    @field_validator("csv_timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from tuner.carbon.csvfile import check_timezone

        return check_timezone(value)

    @model_validator(mode="after")
    def _check_provider_options(self) -> CarbonSettings:
        if self.provider == "csv":
            if self.csv_path is None:
                raise ValueError("provider 'csv' needs csv_path: the trace file to read")
            if not Path(self.csv_path).expanduser().is_file():
                raise ValueError(f"csv_path: no such file '{self.csv_path}'")
        if self.provider == "electricitymaps" and not self.zone:
            raise ValueError("provider 'electricitymaps' needs zone, e.g. zone: DE")
        if self.provider == "watttime" and not self.region:
            raise ValueError("provider 'watttime' needs region, e.g. region: CAISO_NORTH")
        if self.provider == "ukci" and self.region is not None:
            if not (str(self.region).isdigit() and 1 <= int(self.region) <= 17):
                raise ValueError(f"region: UK Carbon Intensity region ids are 1-17, got {self.region}")
        if self.policy in ("threshold", "pause-resume"):
            if (self.threshold_g_per_kwh is None) == (self.threshold_percentile is None):
                raise ValueError(
                    f"policy '{self.policy}' needs exactly one of threshold_g_per_kwh or "
                    "threshold_percentile"
                )
        if self.policy != "none" and self.deadline is None:
            raise ValueError(f"policy '{self.policy}' needs a deadline, e.g. deadline: 24h")
        if self.placement != "none" and not self.zones:
            raise ValueError(f"placement '{self.placement}' needs zones, e.g. zones: {{DE: {{provider: csv, csv_path: de.csv}}}}")
        for name, zone in self.zones.items():
            try:
                self.zone_settings(name, zone)
            except ValidationError as exc:
                why = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
                raise ValueError(f"zones.{name}: {why}") from None
        return self

    @staticmethod
    def zone_settings(name: str, zone: ZoneCarbonSettings) -> CarbonSettings:
        """One zone's provider options as a full ``CarbonSettings`` (what ``build_provider``
        takes), with the zone's name as its static fallback zone."""
        fields = zone.model_dump(exclude_unset=True)
        fields["zone"] = zone.zone or name
        return CarbonSettings(**fields)

    @property
    def deadline_s(self) -> float | None:
        """The deadline in seconds after the study starts, or ``None``."""
        return None if self.deadline is None else parse_duration(self.deadline, "carbon.deadline")


def parse_duration(text: str, field: str) -> float:
    """Seconds in a duration such as ``90s``, ``15min``, ``2h`` or ``1d``; errors name ``field``."""
    import pandas as pd

    text = re.sub(r"(\d)\s*d$", r"\1D", str(text).strip())  # "1d": pandas wants "1D"
    try:
        seconds = pd.Timedelta(text).total_seconds()
    except (ValueError, TypeError):
        if _is_timestamp(text):
            raise ValueError(
                f"{field}: '{text}' is a timestamp; give a duration from the study start "
                "instead, e.g. 24h"
            ) from None
        raise ValueError(f"{field}: '{text}' is not a duration; write e.g. 90min, 2h or 24h") from None
    if not seconds > 0:
        why = (" from the study start (a deadline at or before the start is already past)"
               if "deadline" in field else "")
        raise ValueError(f"{field}: must be a positive duration{why}, got '{text}'")
    return seconds


def _is_timestamp(text: str) -> bool:
    import pandas as pd

    try:
        pd.Timestamp(text)
    except (ValueError, TypeError):
        return False
    return True


class ReportSettings(_Strict):
    """What the report's price tag charges per kWh, and the carbon intensity it falls back on.

    ``price_per_kwh`` defaults to 0.30 EUR, a round figure near the EU household average
    of 2023-24 (Eurostat: about 0.29 EUR/kWh); set your own tariff. ``co2_kg_per_kwh``
    applies only when the trials table carries no measured ``co2_kg``; unset, it is the
    world average of the static carbon provider (``tuner.carbon.static``), so the report
    and the carbon accounting never disagree on the same fallback.
    """

    price_per_kwh: float = Field(0.30, ge=0, description="Tariff for the price tag.")
    currency: str = Field("EUR", min_length=1, max_length=8, description="Currency of `price_per_kwh`.")
    co2_kg_per_kwh: float | None = Field(
        None, ge=0, description="Used only when no CO2 was measured; unset: the static carbon provider's world average."
    )


class ReferencePoint(_Strict):
    """The corner the study's hypervolume is measured from: the worst metric and energy
    that still count. Two studies' hypervolumes compare only against the same point, so
    set it when you compare studies; a field left out is chosen once per study and
    stored with it (see docs/results.md)."""

    metric: float | None = Field(None, description="Worst metric that counts (default: 0 for a max metric in [0, 1], else the worst seen).")
    energy_kwh: float | None = Field(None, gt=0, description="Most energy per trial that counts (default: `budget_kwh`).")


Strategy = Literal["bo", "grid", "random", "sobol"]


class StudyConfig(_Strict):
    """Everything a study needs. ``docs/config.md`` lists the same fields."""

    objective: Any = Field(description='"module:function", or a callable in Python.')
    search_space: dict[str, Parameter] = Field(
        description="Parameter name to spec; a plain value is fixed. At least one range or choice."
    )
    budget_kwh: float = Field(description="The energy budget, in kWh; > 0.")
    name: str | None = Field(
        None, description="Letters, digits, `_`, `-`, `.`; default: the objective function's name."
    )
    metric: str = Field("accuracy", description="The metric the objective returns; an identifier.")
    mode: Literal["max", "min"] = Field(
        "max", description="`energy_kwh` is always the second objective, minimised."
    )
    metric_threshold: float | None = Field(
        None, description="bo: worst metric worth finding (default: Ax infers it)."
    )
    max_trials: int | None = Field(None, ge=1, description="Optional cap on the number of trials.")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Default: as many as the resources allow."
    )
    expected_trial_s: float | None = Field(
        None, gt=0, description="Your estimate of one trial's wall time, in s: greentune warns before the "
        "study when the budget cannot pay for one such trial (at `resources_per_trial.cpu` x watts per core)."
    )
    max_consecutive_failures: int | None = Field(
        5, ge=0, description="Stop launching trials after this many failed in a row (Ray Tune's fail_fast, "
        "with room for a few bad configs); 0 or null: never. See [faults](faults.md#trials-that-keep-failing)."
    )
    resources_per_trial: Resources = Field(Resources(), description="What Ray reserves for each trial.")
    reuse_trial_processes: bool = Field(
        True,
        description="Run the next trial in the process the last one ran in (Ray Tune's reuse_actors): "
        "no process start, imports or data loading again. Each trial keeps its own energy window. "
        "Turn off for objectives that leave state behind in their process.",
    )
    strategy: Strategy = Field("bo", description="bo (Ax/BoTorch); grid, random and sobol are baselines.")
    seed: int | None = Field(None, description="Seed for the searcher; 0 .. 2**32-1.")
    grid_resolution: int = Field(3, ge=2, le=50, description="grid: levels per range parameter.")
    initial_trials: int | None = Field(
        None, ge=1, description="bo/sobol: Sobol points before BO (default: Ax decides)."
    )
    early_stopping: Literal["none", "pareto"] = Field(
        "none", description="pareto: stop a trial whose per-report curve cannot reach the front."
    )
    output_dir: Path | None = Field(
        None, description="Default `./greentune-runs/<name>`; resolved to an absolute path."
    )
    mlflow: MlflowSettings = Field(MlflowSettings(), description="Where results are tracked.")
    energy: EnergySettings = Field(EnergySettings(), description="How trial energy is measured.")
    pue: float = Field(1.0, description="Facility energy = total x PUE; >= 1 (1.0 = no overhead).")
    carbon: CarbonSettings = Field(CarbonSettings(), description="Carbon intensity and scheduling.")
    address: str | None = Field(None, description="Ray cluster address; default `RAY_ADDRESS`, else local Ray.")
    address_timeout_s: float = Field(
        10.0, gt=0, le=600, description="How long the Ray cluster at `address` has to answer before the study is refused."
    )
    trial_timeout_s: float | None = Field(
        None, gt=0, description="Fail a trial that runs longer (its energy counted, its processes ended); default none."
    )
    report: ReportSettings = Field(ReportSettings(), description="The price tag's rates.")
    reference_point: ReferencePoint = Field(ReferencePoint(), description="Where hypervolume is measured from.")

    @field_validator("objective")
    @classmethod
    def _check_objective(cls, value: Any) -> Any:
        if callable(value):
            return value
        if isinstance(value, str):
            resolve_objective(value)  # fail now, not in a trial
            return value
        raise ValueError("objective must be a callable or a 'module:function' string")

    @field_validator("search_space", mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        if not isinstance(value, Mapping) or not value:
            raise ValueError("search_space must be a non-empty mapping of parameter name to spec")
        return {str(k): v for k, v in value.items()}

    @field_validator("search_space")
    @classmethod
    def _check_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(n for n in value if n in RESERVED_NAMES or n.startswith(RESERVED_PREFIXES))
        if clash:
            raise ValueError(f"parameter names {clash} are reserved for greentune's own columns")
        for name in value:
            problem = mlflow_name_problem(name)
            if problem:
                shown = name if len(name) <= 60 else name[:57] + "..."
                raise ValueError(f"parameter name '{shown}': {problem}")
        if all(_fixed_value(p) is not _NOT_FIXED for p in value.values()):
            raise ValueError("search_space has only fixed values; add at least one range or choice")
        return value

    @field_validator("seed")
    @classmethod
    def _check_seed(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= MAX_SEED:
            raise ValueError(f"seed must lie in 0 .. 2**32-1 (numpy's seed range), got {value}")
        return value

    @field_validator("output_dir", mode="before")
    @classmethod
    def _check_output_dir(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty (that would write into the current directory); leave it out "
                             "for ./greentune-runs/<name>")
        return value

    @field_validator("budget_kwh")
    @classmethod
    def _check_budget(cls, value: float) -> float:
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"budget_kwh must be a positive number of kWh, got {value}")
        return value

    @field_validator("pue")
    @classmethod
    def _check_pue(cls, value: float) -> float:
        # PUE = facility energy / IT energy, so below 1 the facility would make energy.
        if value < 1:
            raise ValueError(
                f"pue must be >= 1 (facility energy / IT energy; 1.0 = no cooling or "
                f"power-delivery overhead), got {value}"
            )
        return value

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", value):
            raise ValueError("name may hold letters, digits, '_', '-' and '.' only")
        return value

    @model_validator(mode="after")
    def _check_metric(self) -> StudyConfig:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.metric):
            raise ValueError(f"metric '{self.metric}' must be an identifier (letters, digits, '_')")
        if self.metric == ENERGY_METRIC:
            raise ValueError(f"metric '{self.metric}' is reserved; energy is always the second objective")
        if is_reserved_result_key(self.metric):
            raise ValueError(f"metric '{self.metric}' is reserved for greentune's or Ray's own result fields "
                             "(energy_*, co2_*, carbon_*, hw_*, greentune_*, time_*, Ray's keys); rename it")
        if self.metric in self.search_space:
            raise ValueError(f"parameter '{self.metric}' has the metric's name; trials.csv and MLflow would mix "
                             "them up, rename one")
        return self

    @model_validator(mode="after")
    def _check_choices_for_ax(self) -> StudyConfig:
        if self.strategy not in ("bo", "sobol"):
            return self
        for name, param in self.tunable.items():
            if isinstance(param, Choice) and len(param.values) > AX_MAX_CHOICE_VALUES:
                raise ValueError(
                    f"search_space.{name}: strategy {self.strategy} takes at most {AX_MAX_CHOICE_VALUES:,} values "
                    f"in a choice (Ax's limit), got {len(param.values):,}; use an int range, or strategy random or grid"
                )
        return self

    @model_validator(mode="after")
    def _check_power_limit(self) -> StudyConfig:
        if POWER_LIMIT_PARAM not in self.search_space:
            return self
        gpu = self.resources_per_trial.gpu
        if gpu < 1 or gpu != int(gpu):
            raise ValueError(
                f"search_space.{POWER_LIMIT_PARAM} needs whole GPUs per trial (resources_per_trial.gpu "
                f">= 1, got {gpu:g}): a power limit on a shared GPU would throttle other trials too"
            )
        low, high = self.power_limit_range_w or (0.0, 0.0)
        if not low > 0:
            raise ValueError(f"search_space.{POWER_LIMIT_PARAM} must hold positive numbers of watts")
        return self

    @model_validator(mode="after")
    def _check_gpu_share(self) -> StudyConfig:
        # after _check_power_limit, whose message is the more specific one for its parameter
        gpu = self.resources_per_trial.gpu
        if gpu > 1 and gpu != int(gpu):
            raise ValueError(f"resources_per_trial.gpu: a share of one GPU is a fraction <= 1; above 1 give a "
                             f"whole number, got {gpu:g} (Ray refuses it)")
        return self

    @model_validator(mode="after")
    def _check_grid_size(self) -> StudyConfig:
        if self.strategy != "grid":
            return self
        points = grid_points(self)
        if points > MAX_GRID_POINTS:
            raise ValueError(
                f"strategy grid: {points:.3g} grid points cannot be enumerated (limit "
                f"{MAX_GRID_POINTS:,}); lower grid_resolution, use fewer choices, or use bo/random"
            )
        if points > LARGE_GRID_POINTS or (self.max_trials is not None and points > self.max_trials):
            limit = f"max_trials is {self.max_trials}" if self.max_trials else "the budget decides"
            warnings.warn(
                f"strategy grid has {points:,} grid points ({limit}); only a random sample of the "
                "grid will run. Lower grid_resolution or use strategy bo/random.",
                GridSizeWarning,
                stacklevel=2,
            )
        return self

    # ----------------------------------------------------------------- derived values

    @property
    def power_limit_range_w(self) -> tuple[float, float] | None:
        """Lowest and highest ``gpu_power_limit_w`` the study may try; ``None`` if not searched."""
        param = self.search_space.get(POWER_LIMIT_PARAM)
        if param is None:
            return None
        if isinstance(param, (FloatRange, IntRange)):
            return float(param.low), float(param.high)
        values = param.values if isinstance(param, Choice) else [param.value]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise ValueError(f"search_space.{POWER_LIMIT_PARAM} must hold numbers of watts, got {values}")
        return float(min(values)), float(max(values))

    @property
    def study_name(self) -> str:
        """``name``, or the objective function's name."""
        if self.name:
            return self.name
        func = resolve_objective(self.objective)
        return re.sub(r"[^A-Za-z0-9_.-]", "_", getattr(func, "__name__", "study")) or "study"

    @property
    def resolved_output_dir(self) -> Path:
        """Absolute output directory: Ray trials run elsewhere, so relative paths break."""
        base = self.output_dir or Path("greentune-runs") / self.study_name
        return Path(os.path.abspath(os.path.expanduser(base)))

    @property
    def tracking_uri(self) -> str:
        """Config, then ``MLFLOW_TRACKING_URI``, then a SQLite file under ``output_dir``."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        env = os.environ.get("MLFLOW_TRACKING_URI")
        if env:
            return env
        return f"sqlite:///{self.resolved_output_dir / 'mlflow.db'}"

    @property
    def tunable(self) -> dict[str, FloatRange | IntRange | Choice]:
        """Parameters the searcher chooses (a one-value choice counts as fixed)."""
        return {k: p for k, p in self.search_space.items() if _fixed_value(p) is _NOT_FIXED}

    @property
    def fixed(self) -> dict[str, Any]:
        """Parameters passed to every trial unchanged."""
        values = {k: _fixed_value(p) for k, p in self.search_space.items()}
        return {k: v for k, v in values.items() if v is not _NOT_FIXED}


_NOT_FIXED = object()

LARGE_GRID_POINTS = 10_000  # warn above this many grid points
MAX_GRID_POINTS = 10_000_000  # the grid searcher holds 4 bytes per point (its shuffled order): 40 MB




def mlflow_name_problem(name: str) -> str | None:
    """Why MLflow would refuse ``name`` as a param or metric key, or ``None`` if it takes it.

    MLflow's rule (``mlflow.utils.validation``): at most 250 characters of letters, digits,
    ``_ - . : /`` and spaces, and, since a name may become a file path, one that stays the
    same under ``normpath`` and does not start with ``/`` or ``..``. Checked at config time:
    a name MLflow refuses mid-study leaves an empty child run stuck RUNNING.
    """
    if len(name) > MAX_NAME_LENGTH:
        return f"longer than {MAX_NAME_LENGTH} characters (MLflow's limit)"
    if not re.fullmatch(r"[/\w.\- :]+", name):
        return "may hold only letters, digits, '_', '-', '.', ':', '/' and spaces (MLflow's rule)"
    if name.startswith("/"):
        return "must not start with '/' (MLflow treats names as file paths)"
    norm = posixpath.normpath(name)
    if norm.startswith(".."):
        return "must not start with '..' (MLflow treats names as file paths)"
    if norm != name or norm == ".":
        return f"MLflow treats names as file paths, and this one would resolve to '{norm}'"
    return None


def grid_points(config: StudyConfig) -> int:
    """How many points the grid searcher enumerates (an upper bound for log-spaced ints)."""
    total = 1
    for param in config.tunable.values():
        if isinstance(param, Choice):
            total *= len(param.values)
        elif isinstance(param, IntRange):
            total *= min(config.grid_resolution, param.high - param.low + 1)
        else:
            total *= config.grid_resolution
    return total


def _fixed_value(param: Any) -> Any:
    if isinstance(param, Fixed):
        return param.value
    if isinstance(param, Choice) and len(param.values) == 1:
        return param.values[0]
    return _NOT_FIXED


def resolve_objective(objective: Callable[..., Any] | str) -> Callable[..., Any]:
    """Turn ``"package.module:function"`` into the function, with errors that say what failed."""
    if callable(objective):
        return objective
    module_name, sep, attr = objective.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"objective '{objective}' must look like 'module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"objective module '{module_name}' cannot be imported: {exc}") from exc
    func = module
    for part in attr.split("."):
        if not hasattr(func, part):
            raise ValueError(f"objective '{objective}': module '{module_name}' has no '{attr}'")
        func = getattr(func, part)
    if not callable(func):
        raise ValueError(f"objective '{objective}' is not callable")
    return func  # type: ignore[return-value]


def load_config(
    source: StudyConfig | Mapping[str, Any] | str | os.PathLike[str], **overrides: Any
) -> StudyConfig:
    """Build a validated :class:`StudyConfig` from an object, a dict or a YAML path.

    ``overrides`` that are not ``None`` replace top-level keys (the CLI flags and the
    keyword arguments of :func:`tuner.tune`). Raises :class:`ConfigError` naming the field.
    """
    if isinstance(source, StudyConfig):
        data: dict[str, Any] = dict(source)
    elif isinstance(source, Mapping):
        data = dict(source)
    elif isinstance(source, (str, os.PathLike)):
        data = _read_yaml(Path(source))
    else:
        raise ConfigError(f"config must be a StudyConfig, a dict or a YAML path, got {type(source).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        config = StudyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    if isinstance(source, Mapping):  # after validation, so that a field's own limit speaks first
        _check_data_size(data)
    return config


# Limits on what a config may hold, checked while it is read: a YAML alias bomb is tiny
# on disk and in PyYAML's graph but explodes when the config is dumped (3.6 GB), and deep
# nesting ends in a RecursionError. A real study config is a few kB and a few levels deep.
MAX_YAML_BYTES = 1 << 20  # 1 MiB
MAX_DEPTH = 64  # nesting levels, aliases expanded
MAX_NODES = 100_000  # values (scalars, lists, mappings, keys), aliases expanded


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"study file '{path}' does not exist")
    try:
        size = path.stat().st_size
        if size > MAX_YAML_BYTES:
            raise ConfigError(f"study file '{path}' is {size / 2**20:.1f} MiB; the limit is "
                              f"{MAX_YAML_BYTES >> 20} MiB")
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"study file '{path}' cannot be read: {exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKeyError as exc:
        raise ConfigError(f"study file '{path}': {exc}") from None
    except _TooLargeError as exc:
        raise ConfigError(f"study file '{path}' {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"study file '{path}' is not valid YAML{_yaml_where(exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"study file '{path}' must hold a mapping of config keys")
    return data


class _DuplicateKeyError(yaml.YAMLError):
    pass


class _TooLargeError(yaml.YAMLError):
    """The document is nested too deep or holds too many values (aliases expanded)."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key repeated in one mapping is an error.

    Plain ``safe_load`` keeps the last value silently, so a parameter defined twice
    (or a budget given twice) would quietly lose one of them.
    """

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        """PyYAML composes recursively: stop at ``MAX_DEPTH`` levels, before Python's own limit."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise _TooLargeError(f"is nested deeper than {MAX_DEPTH} levels at line {line}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_data(self) -> Any:
        """Compose, check the size the document has once its aliases are expanded, then construct."""
        node = self.get_single_node()
        if node is None:
            return None
        _check_expanded(node)
        return self.construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; the base class reports it
                continue
            if first is not None:
                raise _DuplicateKeyError(
                    f"duplicate key '{key}' at line {line} (first at line {first}); "
                    "each key (and each search_space parameter) may appear once"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _check_expanded(root: yaml.Node) -> None:
    """Refuse a YAML graph whose expansion (every alias copied out) is too big or too deep.

    Aliases make the graph a DAG: sizes and depths are memoised per node, so a bomb of
    10^9 values is measured in a few thousand steps. A recursive alias is refused too.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if key in size:
            continue
        children = _children(node)
        if not done:
            if key in open_nodes:
                raise _TooLargeError(f"holds a recursive alias at line {node.start_mark.line + 1}")
            open_nodes.add(key)
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in size)
            continue
        open_nodes.discard(key)
        size[key] = 1 + sum(size[id(c)] for c in children)
        depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
        if size[key] > MAX_NODES:
            raise _TooLargeError(f"holds more than {MAX_NODES:,} values once its aliases are expanded "
                                 f"(at line {node.start_mark.line + 1})")
        if depth[key] > MAX_DEPTH:
            raise _TooLargeError(f"is nested deeper than {MAX_DEPTH} levels once its aliases are expanded "
                                 f"(at line {node.start_mark.line + 1})")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_data_size(data: Any) -> None:
    """The YAML limits for a config given as Python data: shared references count every time
    they appear (as a dump would write them), and the walk stops at the first limit."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, level = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise ConfigError(f"the config holds more than {MAX_NODES:,} values (nested lists and dicts "
                              "counted in full); a study config is a few kB")
        if level > MAX_DEPTH:
            raise ConfigError(f"the config is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, Mapping):
            stack.extend((item, level + 1) for pair in value.items() for item in pair)
        elif isinstance(value, (list, tuple, set, frozenset)):
            stack.extend((item, level + 1) for item in value)


def _yaml_where(exc: yaml.YAMLError) -> str:
    """`` at line L, column C: problem`` on one line, from a PyYAML error."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        return f"{where}: {what}"
    return f": {' '.join(str(exc).split())}"


def _describe(exc: ValidationError) -> str:
    """One readable line per problem, each naming its field."""
    lines = []
    for err in exc.errors():
        parts = [str(p) for p in err["loc"] if p not in {"float", "int", "choice", "fixed"}]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _FieldError):
            parts.append(cause.field)
        loc = ".".join(parts)
        msg = str(err["msg"]).removeprefix("Value error, ")
        msg = msg.removeprefix(f"{loc}: ")  # a validator that already named its field
        if err["type"] == "missing":
            msg = "is required"
        lines.append(f"{loc or 'config'}: {msg}")
    return "invalid study config: " + "; ".join(lines)


def config_dump(config: StudyConfig) -> dict[str, Any]:
    """The config as JSON-ready data, the objective as its import path, secrets masked:
    what ``study.json`` and MLflow's ``config.json`` hold, and a resume compares."""
    data = config.model_dump(mode="json", exclude={"objective"})
    objective = config.objective
    data["objective"] = objective if isinstance(objective, str) else f"{objective.__module__}:{objective.__qualname__}"
    return redact_obj(data)


def config_from_dump(data: dict[str, Any], fallback_name: str | None = None) -> StudyConfig:
    """Validate a stored config without importing its objective (a placeholder stands in)."""
    data = dict(data)
    objective_name = str(data.get("objective", "unknown"))

    def objective(params: dict[str, Any]) -> dict[str, float]:
        raise RuntimeError(f"this config was rebuilt from a record; its objective '{objective_name}' was not loaded")

    data["objective"] = objective
    if not data.get("name") and fallback_name:
        data["name"] = fallback_name
    try:
        return StudyConfig.model_validate(data)
    except Exception as exc:
        raise ConfigError(f"the stored study config is not valid for this greentune version: {exc}") from exc
