"""UK Carbon Intensity, Electricity Maps and WattTime providers against real HTTP servers
on 127.0.0.1 that serve each API's endpoints and payloads, including failures."""

from __future__ import annotations

import logging
from datetime import timedelta

import pandas as pd
import pytest

from tests.carbon_servers import EM_TOKEN, WT_PASSWORD, WT_TOKEN, WT_USER, intensity_at, serve
from tuner.carbon.electricitymaps import ElectricityMapsProvider
from tuner.carbon.fallback import FallbackProvider
from tuner.carbon.http import ProviderError
from tuner.carbon.registry import build_provider
from tuner.carbon.static import StaticProvider
from tuner.carbon.ukci import UkCarbonIntensityProvider
from tuner.carbon.watttime import G_PER_KWH_PER_LB_PER_MWH, WattTimeProvider
from tuner.config import CarbonSettings

FAST = {"timeout_s": 0.5, "retries": 0, "backoff_s": 0.0}


# ------------------------------------------------------------------------ UK Carbon Intensity


def test_ukci_national_current_history_and_forecast() -> None:
    with serve("ukci") as (url, state):
        p = UkCarbonIntensityProvider(base_url=url, **FAST)
        reading = p.current()
        assert reading.g_per_kwh == round(intensity_at(state.now) + 5)  # no actual yet: forecast
        assert reading.signal == "average" and "national" in reading.source

        start = state.now - timedelta(hours=6)
        hist = p.history(start, state.now)
        assert len(hist.values) == 12  # half-hourly
        t0 = hist.values.index[0]
        assert t0 == pd.Timestamp(start) and hist.values.iloc[0] == round(intensity_at(t0))

        fc = p.forecast(state.now, state.now + timedelta(hours=24))
        assert len(fc.values) == 48 and "forecast" in fc.source
        assert fc.values.iloc[0] == round(intensity_at(state.now) + 5)
        assert any("/fw48h" in path for path, _ in state.requests)


def test_ukci_history_longer_than_14_days_is_split() -> None:
    with serve("ukci") as (url, state):
        p = UkCarbonIntensityProvider(base_url=url, **FAST)
        hist = p.history(state.now - timedelta(days=20), state.now)
        assert len(hist.values) == 20 * 48
        assert sum(path.startswith("/intensity/") for path, _ in state.requests) == 2


def test_ukci_regional_uses_the_regional_endpoints() -> None:
    with serve("ukci") as (url, state):
        p = UkCarbonIntensityProvider(13, base_url=url, **FAST)
        assert p.current().g_per_kwh == round(intensity_at(state.now) + 5)
        fc = p.forecast(state.now, state.now + timedelta(hours=2))
        assert len(fc.values) == 4
        paths = [path for path, _ in state.requests]
        assert "/regional/regionid/13" in paths
        assert any(path.endswith("/fw48h/regionid/13") for path in paths)
    with pytest.raises(ValueError, match="carbon.region"):
        UkCarbonIntensityProvider(18)


def test_cache_answers_repeated_calls_without_a_request() -> None:
    with serve("ukci") as (url, state):
        p = UkCarbonIntensityProvider(base_url=url, **FAST)
        for _ in range(5):
            p.current()
        assert len(state.requests) == 1 and p.client.calls == 1


def test_retries_with_backoff_recover_from_503() -> None:
    with serve("ukci") as (url, state):
        state.mode, state.failures_left = "flaky", 2
        p = UkCarbonIntensityProvider(base_url=url, timeout_s=1.0, retries=3, backoff_s=0.01)
        assert p.current().g_per_kwh > 0
        assert len(state.requests) == 3  # two 503s, then the answer


# ------------------------------------------------------------------------ Electricity Maps


def test_electricitymaps_latest_history_forecast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", EM_TOKEN)
    with serve("electricitymaps") as (url, state):
        p = ElectricityMapsProvider("DE", base_url=url, **FAST)
        latest = p.current()
        assert latest.g_per_kwh == round(intensity_at(state.now))
        start = state.now.replace(minute=0) - timedelta(hours=12)
        hist = p.history(start, start + timedelta(hours=12))
        assert len(hist.values) == 12
        assert list(hist.values) == [round(intensity_at(t)) for t in hist.values.index]
        fc = p.forecast(state.now, state.now + timedelta(hours=24))
        assert fc.values.index[0] == pd.Timestamp(state.now)
        assert len(fc.values) == 24 + (state.now.minute > 0)
        path, headers = state.requests[0]
        assert headers["auth-token"] == EM_TOKEN
        assert "zone=DE" in path and "emissionFactorType=lifecycle" in path


def test_electricitymaps_long_history_is_split_into_10_day_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", EM_TOKEN)
    with serve("electricitymaps") as (url, state):
        p = ElectricityMapsProvider("FR", base_url=url, **FAST)
        end = state.now.replace(minute=0)
        assert len(p.history(end - timedelta(days=25), end).values) == 25 * 24
        assert len(state.requests) == 3


def test_electricitymaps_bad_token_is_an_error_without_the_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", "wrong-token-xyz")
    with serve("electricitymaps") as (url, _):
        p = ElectricityMapsProvider("DE", base_url=url, **FAST)
        with pytest.raises(ProviderError, match="HTTP 401") as info:
            p.current()
        assert "wrong-token-xyz" not in str(info.value)
    monkeypatch.delenv("ELECTRICITYMAPS_TOKEN")
    with pytest.raises(ProviderError, match="ELECTRICITYMAPS_TOKEN"):
        ElectricityMapsProvider("DE", base_url="http://127.0.0.1:9").current()


# ------------------------------------------------------------------------ WattTime


def test_watttime_logs_in_and_converts_lbs_per_mwh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATTTIME_TOKEN", raising=False)
    monkeypatch.setenv("WATTTIME_USER", WT_USER)
    monkeypatch.setenv("WATTTIME_PASSWORD", WT_PASSWORD)
    with serve("watttime") as (url, state):
        p = WattTimeProvider("CAISO_NORTH", base_url=url, **FAST)
        reading = p.current()
        assert reading.signal == "marginal"
        assert reading.g_per_kwh == pytest.approx(intensity_at(state.now), abs=0.1)
        start = state.now - timedelta(hours=1)
        hist = p.history(start, state.now)
        assert len(hist.values) == 12
        assert hist.values.iloc[0] == pytest.approx(intensity_at(start), abs=0.1)
        fc = p.forecast(state.now, state.now + timedelta(hours=3))
        assert fc.values.index[-1] < pd.Timestamp(state.now + timedelta(hours=3))
        assert len(fc.values) == 36
        logins = [h for path, h in state.requests if path == "/login"]
        assert len(logins) == 1  # the token is reused
        data = [h for path, h in state.requests if path.startswith("/v3/")]
        assert all(h["Authorization"] == f"Bearer {WT_TOKEN}" for h in data)
    assert G_PER_KWH_PER_LB_PER_MWH == pytest.approx(0.45359237)


def test_watttime_without_credentials_says_a_token_is_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("WATTTIME_TOKEN", "WATTTIME_USER", "WATTTIME_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ProviderError, match="token is required"):
        WattTimeProvider("CAISO_NORTH", base_url="http://127.0.0.1:9", **FAST).current()


def test_watttime_direct_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATTTIME_TOKEN", WT_TOKEN)
    with serve("watttime") as (url, state):
        WattTimeProvider("CAISO_NORTH", base_url=url, **FAST).current()
        assert [path for path, _ in state.requests if path == "/login"] == []


# ------------------------------------------------------------------------ fallback


@pytest.mark.parametrize("mode", ["error", "hang", "html", "wrong-shape"])
def test_any_failure_falls_back_to_static_with_a_warning(
    mode: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("ELECTRICITYMAPS_TOKEN", EM_TOKEN)
    with serve("electricitymaps") as (url, state):
        state.mode = mode
        provider = build_provider(
            CarbonSettings(
                provider="electricitymaps", zone="DE", base_url=url, timeout_s=0.3, retries=0
            )
        )
        with caplog.at_level(logging.WARNING, logger="tuner.carbon"):
            reading = provider.current()
            series = provider.forecast(state.now, state.now + timedelta(hours=3))
    assert reading.g_per_kwh == 380.9  # Germany's static annual average
    assert reading.fallback_reason and "electricitymaps current failed" in reading.fallback_reason
    assert series.fallback_reason and set(series.values) == {380.9}
    assert "using static 380.9 gCO2/kWh (DE (Germany) 2023 average)" in caplog.text
    assert EM_TOKEN not in caplog.text and EM_TOKEN not in reading.fallback_reason


def test_fallback_cools_down_then_retries_the_api() -> None:
    with serve("ukci") as (url, state):
        state.mode = "error"
        p = FallbackProvider(
            UkCarbonIntensityProvider(base_url=url, **FAST),
            StaticProvider(g_per_kwh=200.0),
            cooldown_s=0.2,
        )
        assert p.current().fallback_reason
        assert "retrying" in p.current().fallback_reason  # cooling down: no request
        assert len(state.requests) == 1
        state.mode = "ok"
        import time

        time.sleep(0.25)
        assert p.current().fallback_reason is None


def test_unreachable_server_falls_back() -> None:
    provider = build_provider(
        CarbonSettings(provider="ukci", base_url="http://127.0.0.1:9", timeout_s=0.3, retries=0)
    )
    reading = provider.current()
    assert reading.g_per_kwh == 481.0 and "ukci current failed" in reading.fallback_reason
