"""A real multi-node Ray cluster and a real MLflow server on 127.0.0.1, for tests and benchmarks.

Every node is a ``ray start`` on this machine with its own ports, resources and labels,
in a process session of its own; :meth:`LocalCluster.stop` kills exactly the processes
of those sessions (never ``ray stop``, which would also stop other users' Ray on the
machine). Use it as a context manager so that everything goes away even on failure.

Nodes are started with ``--node-ip-address=127.0.0.1`` and the dashboard (job server)
and MLflow bind to 127.0.0.1 only; Ray itself rewrites a loopback node address to the
machine's IP (``services.resolve_ip_for_localhost``) and its GCS and raylets listen on
all interfaces, with no option to narrow that::

    with LocalCluster.start(workers=[WorkerSpec(resources={"side": 1})]) as cluster:
        tune(config, address=cluster.address)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class WorkerSpec:
    """One worker node: its CPUs, custom resources, labels and environment."""

    num_cpus: int = 1
    num_gpus: int = 0  # declared to Ray; what they are is up to the node's pynvml
    resources: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)


def _ray_bin() -> str:
    found = shutil.which("ray", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    if not found:
        raise RuntimeError("the `ray` command is not installed next to this Python")
    return found


def _node_ports() -> list[str]:
    """Explicit ports for every listener, so nodes never collide with each other or other sessions."""
    names = ("node-manager", "object-manager", "dashboard-agent-listen", "dashboard-agent-grpc", "runtime-env-agent",
             "metrics-export")
    ports = {name: free_port() for name in names}
    # Worker ports: a small range near a free port (the OS rarely hands out neighbours),
    # clear of the ports above (Ray refuses a node whose ports overlap).
    low = free_port()
    while any(low <= port <= low + 40 for port in ports.values()):
        low = free_port()
    args = [f"--{name}-port={port}" for name, port in ports.items()]
    return args + [f"--min-worker-port={low}", f"--max-worker-port={min(low + 40, 65535)}"]


class LocalCluster:
    """Head + worker nodes started with ``ray start``; ``address`` is the GCS, ``dashboard_url`` the job server."""

    def __init__(self, temp_dir: Path, gcs_port: int, dashboard_port: int | None) -> None:
        self.temp_dir = temp_dir
        self.gcs_port = gcs_port
        self.dashboard_port = dashboard_port
        self.sessions: list[int] = []  # session ids of the `ray start` process groups
        self.logs: list[Path] = []

    @property
    def address(self) -> str:
        return f"{HOST}:{self.gcs_port}"

    @property
    def dashboard_url(self) -> str:
        if self.dashboard_port is None:
            raise RuntimeError("this cluster was started without the dashboard (dashboard=True)")
        return f"http://{HOST}:{self.dashboard_port}"

    @classmethod
    @contextmanager
    def start(
        cls,
        head_cpus: int = 1,
        head_resources: Mapping[str, float] | None = None,
        head_env: Mapping[str, str] | None = None,
        workers: list[WorkerSpec] | None = None,
        dashboard: bool = False,
        timeout_s: float = 90.0,
    ) -> Iterator[LocalCluster]:
        # Short path: Ray's unix sockets live under it and must stay under 107 bytes.
        temp_dir = Path(tempfile.mkdtemp(prefix="gt-ray-", dir="/tmp"))
        cluster = cls(temp_dir, free_port(), free_port() if dashboard else None)
        try:
            head = [
                "--head", f"--node-ip-address={HOST}", f"--port={cluster.gcs_port}",
                f"--num-cpus={head_cpus}", "--num-gpus=0",
                f"--ray-client-server-port={free_port()}", f"--temp-dir={temp_dir}",
                "--disable-usage-stats",
            ]
            if head_resources:
                head.append(f"--resources={json.dumps(dict(head_resources))}")
            if dashboard:
                head += ["--include-dashboard=true", f"--dashboard-host={HOST}",
                         f"--dashboard-port={cluster.dashboard_port}"]
            else:
                head.append("--include-dashboard=false")
            cluster._ray_start("head", head, head_env or {}, timeout_s)
            for i, spec in enumerate(workers or []):
                args = [
                    f"--address={cluster.address}", f"--node-ip-address={HOST}",
                    f"--num-cpus={spec.num_cpus}", f"--num-gpus={spec.num_gpus}", "--disable-usage-stats",
                    # Its own session dir: on one machine, nodes sharing one would delete each
                    # other's runtime-env files (a job's working_dir) when done with them.
                    f"--temp-dir={temp_dir / f'w{i}'}",
                ]
                if spec.resources:
                    args.append(f"--resources={json.dumps(dict(spec.resources))}")
                if spec.labels:
                    args.append("--labels=" + ",".join(f"{k}={v}" for k, v in spec.labels.items()))
                cluster._ray_start(f"worker{i}", args, spec.env, timeout_s)
            if dashboard:
                cluster._wait_http(f"{cluster.dashboard_url}/api/version", timeout_s)
            yield cluster
        finally:
            cluster.stop()
            shutil.rmtree(temp_dir, ignore_errors=True)

    def _ray_start(self, name: str, args: list[str], env: Mapping[str, str], timeout_s: float) -> None:
        """``ray start`` in a new session; it returns once the node is registered."""
        log = self.temp_dir / f"ray-start-{name}.log"
        self.logs.append(log)
        full_env = {**os.environ, "RAY_AUTH_MODE": "disabled", **env}
        full_env.pop("RAY_ADDRESS", None)
        with log.open("w") as out:
            proc = subprocess.Popen(
                [_ray_bin(), "start", *args, *_node_ports()], stdout=out, stderr=subprocess.STDOUT,
                env=full_env, start_new_session=True,
            )
        self.sessions.append(proc.pid)  # its pid is the new session's id
        try:
            code = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            raise RuntimeError(f"`ray start` for {name} failed ({code}):\n{log.read_text()[-3000:]}")

    def _wait_http(self, url: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s") from None
                time.sleep(0.5)

    def pids(self) -> list[int]:
        """Live processes in this cluster's sessions (raylets, GCS, workers, agents)."""
        return _session_pids(set(self.sessions))

    def stop(self) -> None:
        _kill_sessions(set(self.sessions))


def _session_pids(sessions: set[int]) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) in sessions:
                pids.append(int(entry))
        except (ProcessLookupError, PermissionError):
            continue
    return pids


def _kill_sessions(sessions: set[int], grace_s: float = 5.0) -> None:
    """SIGTERM every process of ``sessions``, then SIGKILL the ones still alive after ``grace_s``."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 2.0)):
        pids = _session_pids(sessions)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _session_pids(sessions):
            time.sleep(0.1)


class MlflowServer:
    """``mlflow server`` on 127.0.0.1 with a SQLite backend and an artifact directory."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://{HOST}:{self.port}"

    @classmethod
    @contextmanager
    def start(cls, root: Path, timeout_s: float = 90.0, port: int | None = None) -> Iterator[MlflowServer]:
        """Start it (on ``port`` to restart a stopped server at its old address)."""
        server = cls(root, port)
        root.mkdir(parents=True, exist_ok=True)
        log = root / "mlflow-server.log"
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        try:
            with log.open("w") as out:
                server.proc = subprocess.Popen(
                    [sys.executable, "-m", "mlflow", "server", "--host", HOST, "--port", str(server.port),
                     "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                     "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
                    stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                )
            deadline = time.monotonic() + timeout_s
            while True:
                try:
                    with urllib.request.urlopen(f"{server.uri}/health", timeout=5):
                        break
                except OSError:
                    if server.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"mlflow server did not start:\n{log.read_text()[-3000:]}") from None
                    time.sleep(0.5)
            yield server
        finally:
            if server.proc is not None:
                _kill_sessions({server.proc.pid})
                server.proc.wait(timeout=10)
