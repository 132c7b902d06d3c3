"""Checks a study passes before anything of it exists: its output directory, the Ray
cluster's address, and whether one trial's resources fit on any node.

Each of these failed late before: a folder that was not a study got its ``trials.csv``
overwritten, an unreachable address hung ``ray.init`` for 150 s and left a ``study.json``
that blocked a re-run, and ``cpu: 1000000`` or ``gpu: 1`` on a machine without GPUs
waited forever once the MLflow run and the output directory existed. Here they are one
:class:`ConfigError` line each, raised before the output directory or the MLflow run
is made (and, for a local study, before Ray starts).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path

from tuner.config import ConfigError, Resources, StudyConfig
from tuner.study.files import STATE_FILE

logger = logging.getLogger("tuner")

# What greentune itself may have left in an output directory when a start failed before
# study.json was written: the lock, the local MLflow store and its artifacts, the queue,
# and atomic_write's temporary files (".<name>.<random>.tmp").
OWN_FILES = frozenset({
    "study.lock", "mlflow.db", "mlflow.db-journal", "mlflow.db-wal", "mlflow.db-shm", "mlartifacts",
    "mlflow-queue.jsonl", "mlflow-rejected.jsonl",
})


def check_output_dir(directory: Path, resume: bool) -> None:
    """Refuse an output directory greentune must not write into.

    A file; a path below a file; a directory that cannot be created; or (for a new
    study) an existing directory holding anything but a study (``study.json``) or
    greentune's own leftovers of a failed start (:data:`OWN_FILES`): greentune writes
    ``trials.csv``, ``report.html``, ``ledger.json`` and more there and would overwrite
    someone's files of those names.
    """
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"output_dir '{directory}' is a file, not a directory")
    if not directory.exists():
        ancestor = next((p for p in directory.parents if p.exists()), None)
        if ancestor is not None and not ancestor.is_dir():
            raise ConfigError(f"output_dir '{directory}' cannot be created: '{ancestor}' is a file")
        if ancestor is not None and not os.access(ancestor, os.W_OK | os.X_OK):
            raise ConfigError(f"output_dir '{directory}' cannot be created: '{ancestor}' is not writable")
        return
    if resume or (directory / STATE_FILE).exists():
        return  # a study: resuming it, or refusing to start over it, is the study's own call
    try:
        names = sorted(p.name for p in directory.iterdir())
    except OSError as exc:
        raise ConfigError(f"output_dir '{directory}' cannot be read: {exc.strerror or exc}") from None
    others = [n for n in names if n not in OWN_FILES and not (n.startswith(".") and n.endswith(".tmp"))]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise ConfigError(
            f"output_dir '{directory}' is not empty and holds no study (no {STATE_FILE}): {shown}; greentune "
            "writes trials.csv, report.html and ledger.json there, so choose a new or empty directory"
        )


def check_cluster(cfg: StudyConfig) -> None:
    """Reach the cluster at the study's address (with a timeout), then check that a trial fits.

    With an address (``address`` or ``RAY_ADDRESS``; ``auto`` included) the driver connects
    now and asks the cluster for its nodes, and its autoscaler for the node types it may
    add. Without one, this machine's capacity is what a local Ray would get, worked out
    without starting Ray. A Ray already running in this process is asked directly. A
    study that searches ``gpu_power_limit_w`` first has its GPUs checked on the cluster.
    """
    import ray

    from tuner.study.launch import check_power_limits, ensure_ray

    address = cfg.address or os.environ.get("RAY_ADDRESS") or None
    if address == "local":
        address = None
    if address is not None:
        probe_address(address, cfg.address_timeout_s)
    if cfg.power_limit_range_w is not None:
        check_power_limits(cfg)  # the more specific refusal (GPUs whose power limit can be set); starts Ray
    if address is None and not ray.is_initialized():
        cpus, gpus = machine_capacity()
        check_fits(cfg.resources_per_trial, [{"CPU": cpus, "GPU": gpus}], [], False, "this machine")
        return
    ensure_ray(cfg.address)
    nodes = [dict(n.get("Resources") or {}) for n in ray.nodes() if n.get("Alive")]
    groups, autoscaler = _autoscaler_node_types()
    where = f"the Ray cluster at {address}" if address else "the running Ray"
    check_fits(cfg.resources_per_trial, nodes, groups, autoscaler, where)


def check_fits(resources: Resources, nodes: Sequence[Mapping[str, float]], node_types: Sequence[Mapping[str, float]],
               autoscaler: bool, where: str) -> None:
    """Refuse ``resources`` that fit on no node of ``nodes`` nor of the autoscaler's ``node_types``.

    An autoscaler that does not say which node types it may add gets the benefit of the
    doubt (a warning); Ray would otherwise queue the trial for ever.
    """
    def fits(node: Mapping[str, float]) -> bool:
        return float(node.get("CPU", 0)) >= resources.cpu and float(node.get("GPU", 0)) >= resources.gpu

    if any(fits(n) for n in nodes):
        return
    if any(fits(n) for n in node_types):
        logger.info("no node has %g CPUs and %g GPUs free for a trial yet; the autoscaler can add one",
                    resources.cpu, resources.gpu)
        return
    largest = max(nodes, key=lambda n: (float(n.get("GPU", 0)), float(n.get("CPU", 0))), default={})
    have = f"{float(largest.get('CPU', 0)):g} CPUs, {float(largest.get('GPU', 0)):g} GPUs"
    asks = f"resources_per_trial asks {resources.cpu:g} CPUs and {resources.gpu:g} GPUs per trial"
    if autoscaler and not node_types:
        logger.warning("%s; no node of %s has that now (largest: %s), and its autoscaler does not say what it "
                       "can add: trials wait until it adds such a node", asks, where, have)
        return
    label = have if where == "this machine" else f"largest node: {have}"
    raise ConfigError(f"{asks}; no node ({where}: {label}) has that, so every trial would wait forever")


def machine_capacity() -> tuple[float, float]:
    """CPUs and GPUs a local Ray started by greentune would get, by Ray's own detection
    (cgroup CPU limits, ``CUDA_VISIBLE_DEVICES``), without starting Ray."""
    try:
        from ray._private.resource_and_label_spec import ResourceAndLabelSpec

        spec = ResourceAndLabelSpec().resolve(is_head=True)
        return float(spec.num_cpus or 0), float(spec.num_gpus or 0)
    except Exception:  # noqa: BLE001 - a Ray without this internal: CPUs only, which never wrongly refuses a GPU
        return float(os.cpu_count() or 1), float("inf")


def probe_address(address: str, timeout_s: float) -> None:
    """Open a TCP connection to the cluster's address within ``timeout_s``, or refuse the study.

    ``ray.init`` against an address nobody answers on retries for about 150 s and ignores
    Ctrl-C; a refused or silent port is known in at most ``timeout_s`` here. A port that
    answers but is not Ray's is not caught (``ray.init`` then waits as before).
    """
    target = _host_port(address)
    if target is None:
        return
    try:
        with socket.create_connection(target, timeout=timeout_s):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
        raise ConfigError(
            f"address: the Ray cluster at {address} did not answer within {timeout_s:g} s ({reason}); check the "
            "address (`ray status` on the head node) or raise address_timeout_s"
        ) from None


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a GCS (``host:port``) or Ray Client (``ray://host:port``) address;
    ``None`` for ``auto`` and other schemes, which Ray resolves itself."""
    if "://" in address:
        scheme, _, rest = address.partition("://")
        if scheme != "ray":
            return None
        address = rest.split("/")[0]
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _autoscaler_node_types() -> tuple[list[dict[str, float]], bool]:
    """Resources of the node types the cluster's autoscaler may add, and whether it has one."""
    types: list[dict[str, float]] = []
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        if config is not None:
            types = [{k: float(v) for k, v in group.resources.items()}
                     for group in config.node_group_configs if group.max_count != 0]
    except Exception:  # noqa: BLE001 - an older Ray or no autoscaler state: judged by the live nodes
        pass
    return types, bool(types) or _autoscaler_running()


def _autoscaler_running() -> bool:
    """Whether an autoscaler (not Ray's read-only monitor) reports on the cluster.

    Every head node's monitor writes ``__autoscaling_status``; without an autoscaling
    config (Ray's read-only provider) it names each node's type after the node itself
    (``node_<id>``), while an autoscaler maps nodes to its node type names
    (``ray.worker.gpu``, a KubeRay group) and may have nodes pending.
    """
    try:
        import json

        from ray.experimental.internal_kv import _internal_kv_get

        status = json.loads(_internal_kv_get("__autoscaling_status") or b"{}")
    except Exception:  # noqa: BLE001 - no status: judged by the live nodes
        return False
    report = status.get("autoscaler_report") or {}
    mapping = report.get("node_type_mapping") or {}
    return (any(str(v) not in (str(k), f"node_{k}") for k, v in mapping.items())
            or bool(report.get("pending_nodes")) or bool(report.get("pending_launches")))


__all__ = ["OWN_FILES", "check_cluster", "check_fits", "check_output_dir", "machine_capacity", "probe_address"]
