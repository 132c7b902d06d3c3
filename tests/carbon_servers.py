"""Real HTTP servers on 127.0.0.1 that speak the carbon APIs' endpoints and payload shapes.

Each server derives its values from one known curve (``intensity_at``), so tests can
compare what a provider returns with what the API "measured". ``mode`` switches a server
into the failures real APIs have: HTTP 500, 503-then-recover, a hang past the client's
timeout, a body that is not JSON, and a payload of the wrong shape.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

UTC = timezone.utc
EM_TOKEN = "em-secret-token-123"
WT_USER, WT_PASSWORD, WT_TOKEN = "wt-user", "wt-password-456", "wt-jwt-token-789"
LB_PER_MWH_PER_G_PER_KWH = 1000.0 / 453.59237


def intensity_at(when: datetime) -> float:
    """The servers' ground truth: 100 g/kWh plus 10 per hour of the UTC day (100..330)."""
    return 100.0 + 10.0 * when.astimezone(UTC).hour


def _parse(text: str) -> datetime:
    text = unquote(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _steps(start: datetime, end: datetime, step: timedelta) -> Iterator[datetime]:
    t = start
    while t < end:
        yield t
        t += step


class _State:
    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.failures_left = 0
        now = datetime.now(UTC)
        self.now = now.replace(minute=30 if now.minute >= 30 else 0, second=0, microsecond=0)
        self.g_per_kwh: float | None = None  # set: every slot has this intensity (a grid that turns)


class _Handler(BaseHTTPRequestHandler):
    state: _State
    api: str

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: Any, raw: bool = False) -> None:
        data = body.encode() if raw else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html" if raw else "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        st = self.state
        st.requests.append((self.path, dict(self.headers.items())))
        if st.mode == "error":
            return self._send(500, {"error": "internal error"})
        if st.mode == "flaky" and st.failures_left > 0:
            st.failures_left -= 1
            return self._send(503, {"error": "try again"})
        if st.mode == "hang":
            time.sleep(1.5)
            return self._send(200, {"data": []})
        if st.mode == "html":
            return self._send(200, "<html>maintenance</html>", raw=True)
        if st.mode == "wrong-shape":
            return self._send(200, {"unexpected": True})
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        status, body = getattr(self, f"_{self.api}")(url.path, query)
        self._send(status, body)

    # ---------------------------------------------------------------- UK Carbon Intensity

    def _ukci(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        now = self.state.now

        def slot(t: datetime, actual: bool) -> dict[str, Any]:
            value = intensity_at(t) if self.state.g_per_kwh is None else self.state.g_per_kwh - 5
            intensity = {"forecast": round(value + 5), "index": "moderate"}
            if actual:
                intensity["actual"] = round(value) if t < now else None
            return {
                "from": t.strftime("%Y-%m-%dT%H:%MZ"),
                "to": (t + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%MZ"),
                "intensity": intensity,
            }

        half = timedelta(minutes=30)
        if parts == ["intensity"]:
            return 200, {"data": [slot(now, actual=True)]}
        if parts[:1] == ["intensity"] and len(parts) == 3:
            start = _parse(parts[1])
            end = start + timedelta(hours=48) if parts[2] == "fw48h" else _parse(parts[2])
            if end - start > timedelta(days=14):
                return 400, {"error": {"code": "400 Bad Request", "message": "range > 14 days"}}
            return 200, {"data": [slot(t, actual=True) for t in _steps(start, end, half)]}
        if parts[:2] == ["regional", "regionid"]:
            region = {"regionid": int(parts[2]), "dnoregion": "UKPN London", "shortname": "London"}
            return 200, {"data": [{**region, "data": [slot(now, actual=False)]}]}
        if parts[:2] == ["regional", "intensity"] and parts[-2] == "regionid":
            start = _parse(parts[2])
            end = start + timedelta(hours=48) if parts[3] == "fw48h" else _parse(parts[3])
            region = {"regionid": int(parts[-1]), "dnoregion": "UKPN London", "shortname": "London"}
            slots = [slot(t, actual=False) for t in _steps(start, end, half)]
            return 200, {"data": {**region, "data": slots}}
        return 404, {"error": {"code": "404", "message": f"no route {path}"}}

    # ---------------------------------------------------------------- Electricity Maps

    def _electricitymaps(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if self.headers.get("auth-token") != EM_TOKEN:
            return 401, {"message": "Invalid authentication credentials"}
        zone, now = query.get("zone"), self.state.now
        if zone is None:
            return 400, {"error": "zone is required"}

        def point(t: datetime) -> dict[str, Any]:
            return {
                "zone": zone,
                "carbonIntensity": round(intensity_at(t)),
                "datetime": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "updatedAt": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "createdAt": now.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "emissionFactorType": query.get("emissionFactorType", "lifecycle"),
                "isEstimated": False,
                "estimationMethod": None,
            }

        hour = timedelta(hours=1)
        if path == "/v3/carbon-intensity/latest":
            return 200, point(now.replace(minute=0))
        if path == "/v3/carbon-intensity/history":
            return 200, {"zone": zone, "history": [point(now - i * hour) for i in range(24, 0, -1)]}
        if path == "/v3/carbon-intensity/past-range":
            start, end = _parse(query["start"]), _parse(query["end"])
            if end - start > timedelta(days=10):
                return 400, {"error": "range is limited to 10 days"}
            return 200, {"zone": zone, "data": [point(t) for t in _steps(start, end, hour)]}
        if path == "/v3/carbon-intensity/forecast":
            start = now.replace(minute=0)
            forecast = [
                {
                    "carbonIntensity": round(intensity_at(t)),
                    "datetime": t.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                }
                for t in _steps(start, start + timedelta(hours=72), hour)
            ]
            return 200, {"zone": zone, "forecast": forecast, "updatedAt": now.isoformat()}
        return 404, {"message": f"no route {path}"}

    # ---------------------------------------------------------------- WattTime

    def _watttime(self, path: str, query: dict[str, str]) -> tuple[int, Any]:
        if path == "/login":
            expected = base64.b64encode(f"{WT_USER}:{WT_PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {expected}":
                return 403, {"error": "invalid credentials"}
            return 200, {"token": WT_TOKEN}
        if self.headers.get("Authorization") != f"Bearer {WT_TOKEN}":
            return 401, {"error": "unauthorized"}
        region, signal = query.get("region"), query.get("signal_type", "co2_moer")
        five = timedelta(minutes=5)
        now = self.state.now

        def points(times: Iterator[datetime]) -> list[dict[str, Any]]:
            return [
                {
                    "point_time": t.isoformat(),
                    "value": round(intensity_at(t) * LB_PER_MWH_PER_G_PER_KWH, 1),
                }
                for t in times
            ]

        meta = {
            "region": region,
            "signal_type": signal,
            "units": "lbs_co2_per_mwh",
            "model": {"date": "2023-03-01"},
            "data_point_period_seconds": 300,
            "warnings": [],
        }
        if path == "/v3/historical":
            start, end = _parse(query["start"]), _parse(query["end"])
            return 200, {"data": points(_steps(start, end + five, five)), "meta": meta}
        if path == "/v3/forecast":
            hours = int(query.get("horizon_hours", "24"))
            times = _steps(now, now + timedelta(hours=hours) + five, five)
            return 200, {"data": points(times), "meta": {**meta, "generated_at": now.isoformat()}}
        return 404, {"error": f"no route {path}"}


@contextmanager
def serve(api: str) -> Iterator[tuple[str, _State]]:
    """Run the ``api`` server ("ukci", "electricitymaps" or "watttime") on a free port;
    yields its base URL and its state (mode, request log, clock)."""
    state = _State()
    handler = type(f"{api}Handler", (_Handler,), {"state": state, "api": api})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield (base + "/v3" if api == "electricitymaps" else base), state
    finally:
        server.shutdown()
        server.server_close()
