"""Carbon-aware placement: send each new trial to the cleanest zone that has room.

A Ray cluster may span grid zones. A node is in zone ``Z`` when it carries the custom
resource ``zone:Z`` (``ray start --resources '{"zone:DE": 1000}'``): custom resources
exist on every Ray version greentune supports, show in ``ray.nodes()``, and a trial can
request a sliver of one, which pins it to that zone's nodes without using up anything
real. ``carbon.zones`` maps each zone to its own intensity provider (the options of
``carbon:`` itself, built by :func:`tuner.carbon.registry.build_provider`).

With ``carbon.placement: lowest``, :class:`PlacementGate` sits outermost in the
study's searcher chain. For each suggestion it ranks the zones that still have a free
trial slot by their mean intensity over the trial's expected run (the provider's
forecast over that window) and stores the cleanest one in the trial's config under
:data:`ZONE_KEY`. :class:`ZoneResources` turns that key into a resource request of
:data:`ZONE_SHARE` of ``zone:Z``, and :func:`run_placed_trial` removes it before the
objective sees its params. When the cleanest zone is full the next cleanest is used,
so placement never holds a trial back while any zone has room: no loss of throughput.
Slots are counted by the gate itself (trials it placed that have not completed,
against what the zone's nodes fit), not read back from Ray, whose available-resource
view lags by up to a heartbeat and would let a burst of suggestions overfill a zone.

Whatever the placement, :class:`ZonedAccountant` books each trial's CO2 with the
intensity of the zone of the node it actually ran on (its record's ``hw_node_id``), so
the accounting stays true even with ``placement: none`` or a trial Ray put elsewhere.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pandas as pd
from ray.tune.search import Searcher

from tuner.carbon.accounting import CarbonAccountant
from tuner.carbon.base import IntensityProvider
from tuner.carbon.series import StepFunction

if TYPE_CHECKING:
    from tuner.config import CarbonSettings, StudyConfig
    from tuner.study.ledger import EnergyLedger
    from tuner.study.record import TrialRecord

log = logging.getLogger(__name__)

ZONE_PREFIX = "zone:"
"""A node is in zone ``Z`` when it has the custom resource ``zone:Z``."""
ZONE_KEY = "__greentune_zone__"
"""The trial-config key carrying the chosen zone from the gate to the resource request."""
ZONE_SHARE = 0.001
"""How much of ``zone:Z`` a placed trial requests: enough to pin it, too little to matter."""
DEFAULT_RUN = timedelta(hours=1)
"""The run length ranked over before any trial has finished and no ``expected_trial_s``."""


# ---------------------------------------------------------------------------- zones


def zone_of(resources: Mapping[str, float]) -> str | None:
    """The zone a node's resources name (``zone:DE`` -> ``DE``), or ``None``."""
    for key in resources:
        if key.startswith(ZONE_PREFIX) and len(key) > len(ZONE_PREFIX):
            return key[len(ZONE_PREFIX):]
    return None


def node_zones(nodes: list[dict[str, Any]] | None = None) -> dict[str, str]:
    """Node id -> zone for every node Ray knows (alive or not: a finished trial's node may
    have gone since), from ``ray.nodes()`` unless ``nodes`` is given."""
    if nodes is None:
        import ray

        nodes = ray.nodes()
    out = {}
    for node in nodes:
        zone = zone_of(node.get("Resources") or {})
        if zone is not None:
            out[str(node["NodeID"])] = zone
    return out


def zone_slots(cpu: float, gpu: float, nodes: list[dict[str, Any]] | None = None) -> dict[str, int]:
    """How many trials of ``cpu`` CPUs and ``gpu`` GPUs each zone's alive nodes fit at once.

    Counted node by node, since a trial cannot span nodes."""
    if nodes is None:
        import ray

        nodes = ray.nodes()
    slots: dict[str, int] = {}
    for node in nodes:
        resources = node.get("Resources") or {}
        zone = zone_of(resources)
        if zone is None or not node.get("Alive", True):
            continue
        fits = [math.floor(resources.get("CPU", 0.0) / cpu + 1e-9)] if cpu > 0 else []
        if gpu > 0:
            fits.append(math.floor(resources.get("GPU", 0.0) / gpu + 1e-9))
        slots[zone] = slots.get(zone, 0) + (min(fits) if fits else 1)
    return slots


def zone_providers(carbon: CarbonSettings) -> dict[str, IntensityProvider]:
    """One provider per configured zone, built like the study's own (with its fallback)."""
    from tuner.carbon.registry import build_provider
    from tuner.config import CarbonSettings

    return {name: build_provider(CarbonSettings.zone_settings(name, zone)) for name, zone in carbon.zones.items()}


def mean_intensity(provider: IntensityProvider, start: datetime, run: timedelta) -> float:
    """The provider's time-weighted mean intensity over ``[start, start + run)``.

    The forecast where it covers the window; where it covers only part, that part; with no
    forecast at all, the current reading (a zone that is clean now is the best guess)."""
    end = start + max(run, timedelta(seconds=1))
    try:
        values = provider.forecast(start, end).values.dropna()
    except Exception as exc:  # noqa: BLE001 - a zone whose forecast fails is ranked on its reading
        log.warning("carbon placement: no forecast for %s (%s); using its current reading", provider.name, exc)
        values = pd.Series(dtype=float)
    if not values.empty:
        mean = StepFunction(values.sort_index()).mean(pd.Timestamp(start), pd.Timestamp(end))
        if math.isfinite(mean):
            return float(mean)
        return float(values.iloc[-1])
    return float(provider.current().g_per_kwh)


def rank_zones(
    providers: Mapping[str, IntensityProvider], free: list[str], start: datetime, run: timedelta
) -> list[tuple[str, float]]:
    """``free`` zones, cleanest first over ``[start, start + run)``, with their mean g/kWh
    (ties: the zone named first in ``carbon.zones`` wins, so the choice is stable)."""
    order = {name: i for i, name in enumerate(providers)}
    scored = [(zone, mean_intensity(providers[zone], start, run)) for zone in free]
    return sorted(scored, key=lambda item: (item[1], order.get(item[0], len(order))))


# ---------------------------------------------------------------------------- the gate


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class PlacementGate(Searcher):
    """Wraps the study's searcher and gives each new trial the cleanest zone with room.

    ``slots()`` says how many trials each zone fits at once (re-read at most every
    ``refresh_s``, so nodes that join or leave are seen); ``expected_run()`` how long a
    trial is expected to take. While no zone has a free slot the answer is "wait"
    (``None``) before the inner searcher is asked, so no trial is admitted (or booked in
    the ledger) that has nowhere to run. With no zoned node in the cluster at all, trials
    go unplaced, with one warning, rather than waiting forever.
    """

    def __init__(
        self,
        inner: Searcher,
        providers: Mapping[str, IntensityProvider],
        slots: Callable[[], dict[str, int]],
        expected_run: Callable[[], timedelta] = lambda: DEFAULT_RUN,
        clock: Callable[[], datetime] = utc_now,
        refresh_s: float = 10.0,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(metric=None, mode=None)
        self.inner = inner
        self.providers = dict(providers)
        self.slots = slots
        self.expected_run = expected_run
        self.clock = clock
        self.refresh_s = refresh_s
        self.notify = notify
        self.placed: dict[str, str] = {}  # trial id -> zone, until the trial completes
        self.counts: dict[str, int] = {}  # zone -> trials placed there in all
        self.spilled = 0  # trials that went to a zone other than the cleanest
        self._slots: dict[str, int] = {}
        self._slots_at = -math.inf
        self._unplaced_warned = False

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return True

    def __getstate__(self) -> dict[str, Any]:
        """Ray pickles the searcher; providers and callables stay behind (greentune resumes
        from its own ledger)."""
        drop = ("providers", "slots", "expected_run", "clock", "notify")
        return {k: (None if k in drop else v) for k, v in self.__dict__.items()}

    def capacity(self) -> dict[str, int]:
        """Slots per configured zone (zones the cluster lacks have none)."""
        now = time.monotonic()
        if now - self._slots_at >= self.refresh_s:
            found = self.slots()
            self._slots = {zone: found.get(zone, 0) for zone in self.providers}
            self._slots_at = now
        return self._slots

    def free_zones(self) -> list[str]:
        busy: dict[str, int] = {}
        for zone in self.placed.values():
            busy[zone] = busy.get(zone, 0) + 1
        return [zone for zone, n in self.capacity().items() if busy.get(zone, 0) < n]

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        capacity = self.capacity()
        if not any(capacity.values()):
            if not self._unplaced_warned:
                self._unplaced_warned = True
                message = (f"carbon placement: no node has a zone resource for {', '.join(self.providers)} "
                           f"(start nodes with --resources '{{\"{ZONE_PREFIX}{next(iter(self.providers))}\": 1000}}'); "
                           "trials run unplaced")
                log.warning(message)
                if self.notify:
                    self.notify(message)
            return self.inner.suggest(trial_id)
        free = self.free_zones()
        if not free:
            return None  # every zone is full: wait for a slot, before the searcher spends a suggestion
        params = self.inner.suggest(trial_id)
        if not isinstance(params, dict):
            return params
        # rank every zone once: the cleanest free one is taken, and a full cleaner one is a spill
        ranked = [z for z, _ in rank_zones(self.providers, list(capacity), self.clock(), self.expected_run())]
        zone = next(z for z in ranked if z in free)
        if zone != ranked[0]:
            self.spilled += 1
        self.placed[trial_id] = zone
        self.counts[zone] = self.counts.get(zone, 0) + 1
        return {**params, ZONE_KEY: zone}

    @property
    def finish_reason(self) -> str | None:
        return getattr(self.inner, "finish_reason", None)

    def report(self) -> dict[str, Any]:
        """Flat figures for MLflow and the study summary (and the inner gate's)."""
        inner = getattr(self.inner, "report", None)
        out = dict(inner()) if callable(inner) else {}
        out["carbon_placement"] = "lowest"
        out["carbon_placed"] = ", ".join(f"{z}:{n}" for z, n in sorted(self.counts.items()))
        out["carbon_placement_spilled"] = self.spilled
        return out

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.inner.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.placed.pop(trial_id, None)
        self.inner.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        self.inner.save(checkpoint_path)


class ZoneResources:
    """Ray Tune per-trial resources: the study's CPUs and GPUs, plus :data:`ZONE_SHARE` of
    ``zone:Z`` for the zone :class:`PlacementGate` chose (read from the trial's config)."""

    def __init__(self, cpu: float, gpu: float) -> None:
        self.cpu, self.gpu = cpu, gpu

    def __call__(self, config: dict[str, Any]) -> Any:
        from ray.tune import PlacementGroupFactory

        bundle: dict[str, float] = {"CPU": self.cpu}
        if self.gpu:
            bundle["GPU"] = self.gpu
        zone = config.get(ZONE_KEY)
        if zone:
            bundle[f"{ZONE_PREFIX}{zone}"] = ZONE_SHARE
        return PlacementGroupFactory([bundle])


def without_zone(params: dict[str, Any]) -> dict[str, Any]:
    """The trial's params as the objective should see them: no placement key."""
    return {k: v for k, v in params.items() if k != ZONE_KEY}


def run_placed_trial(params: dict[str, Any], settings: Any) -> None:
    """:func:`tuner.trial.run_trial`, after removing the placement key from the params."""
    from tuner.trial import run_trial

    run_trial(without_zone(params), settings)


def trainable_parts(cfg: StudyConfig) -> tuple[Callable[..., None], Any]:
    """The trial function and resources for Ray Tune: plain ones without placement, the
    zone-pinning ones with it."""
    from tuner.trial import run_trial

    cpu, gpu = cfg.resources_per_trial.cpu, cfg.resources_per_trial.gpu
    if cfg.carbon.placement == "none":
        return run_trial, {"cpu": cpu, "gpu": gpu}
    return run_placed_trial, ZoneResources(cpu, gpu)


def expected_run(cfg: StudyConfig, ledger: EnergyLedger) -> Callable[[], timedelta]:
    """How long the next trial is expected to run: the median completed trial, else
    ``expected_trial_s``, else :data:`DEFAULT_RUN`."""

    def run() -> timedelta:
        durations = [float(e.info["duration_s"]) for e in ledger.completed() if e.info.get("duration_s")]
        if durations:
            return timedelta(seconds=statistics.median(durations))
        if cfg.expected_trial_s:
            return timedelta(seconds=cfg.expected_trial_s)
        return DEFAULT_RUN

    return run


def place_trials(searcher: Searcher, cfg: StudyConfig, ledger: EnergyLedger,
                 providers: Mapping[str, IntensityProvider] | None = None,
                 notify: Callable[[str], None] | None = None) -> Searcher:
    """``searcher`` wrapped in a :class:`PlacementGate` for ``placement: lowest``, else as is."""
    if cfg.carbon.placement == "none":
        return searcher
    cpu, gpu = cfg.resources_per_trial.cpu, cfg.resources_per_trial.gpu
    return PlacementGate(
        searcher,
        providers if providers is not None else zone_providers(cfg.carbon),
        slots=lambda: zone_slots(cpu, gpu),
        expected_run=expected_run(cfg, ledger),
        notify=notify,
    )


# ---------------------------------------------------------------------------- accounting


class ZonedAccountant(CarbonAccountant):
    """Books each trial with the intensity of the zone its node is in.

    A trial whose node has no configured zone (or no recorded node) is booked with the
    study's own provider, as without zones. The study-wide overhead (the driver) is booked
    with the study's provider too; each trial's counterfactual (run at the study's start)
    keeps its own zone, so the reported saving is the saving in time, not in place.
    """

    def __init__(self, provider: IntensityProvider, pue: float, study_start: float,
                 zones: Mapping[str, IntensityProvider],
                 zone_of_node: Callable[[str], str | None] | None = None) -> None:
        super().__init__(provider, pue, study_start)
        self.zones = {name: CarbonAccountant(p, pue, study_start) for name, p in zones.items()}
        self._zone_of_node = zone_of_node
        self._known: dict[str, str] = {}

    def zone_of_node(self, node_id: str | None) -> str | None:
        """The zone of ``node_id`` (asks Ray again for a node it has not seen yet)."""
        if not node_id:
            return None
        if self._zone_of_node is not None:
            return self._zone_of_node(node_id)
        if node_id not in self._known:
            self._known.update(node_zones())
        return self._known.get(node_id)

    def _zone(self, entry: TrialRecord) -> str | None:
        zone = self.zone_of_node(entry.info.get("hw_node_id"))
        return zone if zone in self.zones else None

    def trial(self, entry: TrialRecord) -> dict[str, Any]:
        zone = self._zone(entry)
        if zone is None:
            return super().trial(entry)
        accountant = self.zones[zone]
        info = accountant.trial(entry)
        self.fallback_reasons |= accountant.fallback_reasons
        return {**info, "carbon_zone": zone}

    def counterfactual_kg(self, entry: TrialRecord, series: Any = None) -> float:
        zone = self._zone(entry)
        if zone is None:
            return super().counterfactual_kg(entry, series)
        return self.zones[zone].counterfactual_kg(entry)


def zoned_accountant(accountant: CarbonAccountant, carbon: CarbonSettings,
                     providers: Mapping[str, IntensityProvider] | None = None) -> CarbonAccountant:
    """``accountant`` as is without ``carbon.zones``, else one that books by node zone."""
    if not carbon.zones:
        return accountant
    return ZonedAccountant(accountant.provider, accountant.pue, accountant.study_start,
                           providers if providers is not None else zone_providers(carbon))


__all__ = [
    "DEFAULT_RUN", "ZONE_KEY", "ZONE_PREFIX", "ZONE_SHARE", "PlacementGate", "ZoneResources",
    "ZonedAccountant", "mean_intensity", "node_zones", "place_trials", "rank_zones",
    "run_placed_trial", "trainable_parts", "without_zone", "zone_of", "zone_providers",
    "zone_slots", "zoned_accountant",
]
