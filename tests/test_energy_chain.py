"""The fallback chain, attribution between concurrent trials, idle baseline, overrides,
and what a trial records."""

from __future__ import annotations

import math
import pickle
import time

import pytest

from tests.fakes.fake_powercap import intel_two_socket
from tuner.config import ConfigError, EnergySettings, load_config
from tuner.energy import (
    J_PER_KWH,
    ChainMeter,
    ComponentReading,
    Measurement,
    make_meter,
    with_idle_baseline,
)
from tuner.energy.attribution import OTHER, cpu_share, split_by_cpu_time, subtract_idle
from tuner.energy.rapl import RaplCounter, discover_zones
from tuner.energy.tdp import DEFAULT_WATTS_PER_CORE, watts_per_core
from tuner.trial import TrialSettings, _final_record


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        sum(i * i for i in range(1000))


# ---------------------------------------------------------------- this machine's chain


def test_this_machine_ends_at_the_cpu_time_estimate_with_reasons():
    meter = make_meter()
    meter.begin_window("w")
    _burn(0.3)
    record = meter.end_window("w").as_record()
    meter.close()
    assert record["energy_source"] == "cpu-time-estimate"
    assert record["energy_source_cpu"] == "cpu-time-estimate"
    assert record["energy_source_dram"] == "dram-rss-estimate"
    assert record["energy_source_gpu"] == "absent"
    assert record["energy_fallback_gpu"].startswith("NVML unavailable: ")
    assert "energy_gpu_kwh" not in record
    assert record["energy_kwh"] == pytest.approx(record["energy_cpu_kwh"] + record["energy_dram_kwh"])
    assert record["energy_cpu_kwh"] * J_PER_KWH == pytest.approx(record["cpu_time_s"] * DEFAULT_WATTS_PER_CORE, rel=0.05)
    # overall band: absolute bands added, over the total
    expected = (0.5 * record["energy_cpu_kwh"] + 1.0 * record["energy_dram_kwh"]) / record["energy_kwh"]
    assert record["energy_uncertainty"] == pytest.approx(expected)
    assert record["hw_cpu_model"] and record["hw_node"] and record["hw_gpu_names"] == "unknown"


def test_dram_estimate_follows_resident_memory():
    meter = make_meter(EnergySettings(dram_watts_per_gb=2.0, sample_interval_s=0.02))
    meter.begin_window("w")
    ballast = bytearray(300_000_000)  # 0.3 GB resident once touched
    ballast[::4096] = b"x" * len(ballast[::4096])
    time.sleep(0.5)
    rss_gb = meter.counters["dram"]._watts() / 2.0
    measured = meter.end_window("w")
    meter.close()
    del ballast
    dram = measured.component("dram")
    assert rss_gb > 0.3
    # between the RSS before the allocation and the RSS after it, over the window
    assert (rss_gb - 0.3) * 2.0 * 0.45 < dram.energy_kwh * J_PER_KWH < rss_gb * 2.0 * measured.duration_s


def test_tdp_table_and_user_value():
    watts, note = watts_per_core("Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz")
    assert watts == 7.5 and note.startswith("150 W TDP / 20 cores")
    watts, note = watts_per_core("AMD EPYC 7763 64-Core Processor")
    assert watts == pytest.approx(280 / 64) and "TDP table" in note
    watts, note = watts_per_core("Mystery CPU 3000")
    assert watts == DEFAULT_WATTS_PER_CORE and "not in the TDP table" in note
    assert watts_per_core("Mystery CPU 3000", 4.0)[0] == 4.0


# ---------------------------------------------------------------- overrides and combining


def test_user_overrides_replace_each_component():
    settings = EnergySettings(overrides={"gpu": {"watts": 250.0, "uncertainty": 0.1}, "cpu": {"watts": 50.0}})
    meter = make_meter(settings)
    before_begin = time.monotonic()
    meter.begin_window("w")
    after_begin = time.monotonic()
    time.sleep(0.2)
    before_end = time.monotonic()
    measured = meter.end_window("w")
    after_end = time.monotonic()
    meter.close()
    gpu, cpu = measured.component("gpu"), measured.component("cpu")
    assert gpu.source == cpu.source == "user-override"
    assert 250.0 * (before_end - after_begin) <= gpu.energy_kwh * J_PER_KWH <= 250.0 * (after_end - before_begin)
    assert gpu.relative_uncertainty == 0.1 and math.isnan(cpu.relative_uncertainty)
    assert gpu.reasons == ("250 W given in energy.overrides.gpu",)
    assert measured.source == "user-override" and math.isnan(measured.relative_uncertainty)


def test_overall_source_is_never_better_than_the_weakest_component():
    def reading(c, kwh, source, u):
        return ComponentReading(c, kwh, source, u)

    counters = Measurement.combine([reading("cpu", 2.0, "rapl", 0.1), reading("gpu", 5.0, "nvml-energy-counter", 0.05)], 1.0)
    assert counters.source == "nvml-energy-counter"  # all measured: the biggest
    assert counters.relative_uncertainty == pytest.approx((0.2 + 0.25) / 7.0)
    mixed = Measurement.combine([reading("cpu", 2.0, "rapl", 0.1), reading("dram", 0.1, "dram-rss-estimate", 1.0),
                                 reading("gpu", 5.0, "nvml-energy-counter", 0.05)], 1.0)
    assert mixed.source == "dram-rss-estimate"
    absent = Measurement.combine([ComponentReading("gpu", None, "absent", None, ("no GPU",))], 1.0)
    assert absent.energy_kwh == 0.0 and absent.source == "absent"


def test_energy_settings_errors_name_the_field(tmp_path):
    base = {"objective": "tests.objectives_for_tests:quadratic", "search_space": {"x": {"type": "float", "low": 0, "high": 1}},
            "budget_kwh": 1.0}
    with pytest.raises(ConfigError, match=r"energy\.overrides\.tpu"):
        load_config({**base, "energy": {"overrides": {"tpu": {"watts": 3}}}})
    with pytest.raises(ConfigError, match=r"energy\.overrides\.gpu\.watts"):
        load_config({**base, "energy": {"overrides": {"gpu": {"watts": -1}}}})
    with pytest.raises(ConfigError, match=r"energy: unknown key 'sample_intervall_s'; did you mean 'sample_interval_s'"):
        load_config({**base, "energy": {"sample_intervall_s": 1}})
    with pytest.raises(ConfigError, match="not both"):
        load_config({**base, "energy": {"idle_baseline_s": 1, "idle_watts": {"cpu": 20}}})


# ---------------------------------------------------------------- attribution


def test_split_adds_up_to_the_whole():
    parts = split_by_cpu_time(100.0, {"a": 3.0, "b": 1.0}, machine_busy_s=5.0)
    assert parts == {"a": 60.0, "b": 20.0, OTHER: pytest.approx(20.0)}
    assert sum(parts.values()) == pytest.approx(100.0)
    skewed = split_by_cpu_time(100.0, {"a": 3.0, "b": 3.0}, machine_busy_s=5.0)  # readings raced
    assert skewed["a"] + skewed["b"] == pytest.approx(100.0) and skewed[OTHER] == pytest.approx(0.0)
    assert cpu_share(1.0, 0.0) == 0.0 and cpu_share(2.0, 1.0) == 1.0
    assert subtract_idle(10.0, idle_watts=5.0, duration_s=1.0, share=0.5) == 7.5
    assert subtract_idle(1.0, idle_watts=5.0, duration_s=1.0, share=1.0) == 0.0


def test_concurrent_trials_split_the_package_counter_by_cpu_share(tmp_path):
    """Two trials on one machine: 3 and 1 busy cores, 1 more busy core elsewhere.

    Each window is bracketed by clock readings just outside and just inside its begin
    and end calls, so the expected energy has exact bounds however loaded the machine.
    """
    with intel_two_socket(tmp_path) as fake:
        zones = discover_zones(tmp_path)
        base = time.monotonic()

        def clock(cores):
            return lambda: cores * (time.monotonic() - base)

        meters = {
            name: ChainMeter([RaplCounter("cpu", zones["cpu"])], own_cpu_seconds=clock(cores), machine_cpu_seconds=clock(5))
            for name, cores in (("a", 3), ("b", 1))
        }
        outer, inner, readings = {}, {}, {}
        for name, meter in meters.items():
            before = fake.elapsed()
            meter.begin_window("trial")
            outer[name], inner[name] = [before], [fake.elapsed()]
        time.sleep(1.0)
        for name, meter in meters.items():
            before = fake.elapsed()
            readings[name] = meter.end_window("trial")
            inner[name].append(before)
            outer[name].append(fake.elapsed())
    package = fake.zones[0].trace
    # counters refresh every 1 ms, but the fake's writer thread can lag by tens of ms
    # on a loaded machine: allow 20 ms at each end, for two packages
    slack = 2 * 0.02 * 2 * package.peak

    def whole(bounds):
        return 2 * package.joules(*bounds)

    for name, share in (("a", 0.6), ("b", 0.2)):
        got = readings[name].component("cpu").energy_kwh * J_PER_KWH
        measured_share = readings[name].cpu_share  # clocks are read microseconds apart
        assert measured_share == pytest.approx(share, abs=0.01)
        assert measured_share * whole(inner[name]) - slack <= got <= measured_share * whole(outer[name]) + slack
    assert readings["a"].as_record()["energy_cpu_share"] == readings["a"].cpu_share
    # the two trials and everything else running add up to the package counter
    parts = split_by_cpu_time(whole(outer["a"]), {"a": 3.0, "b": 1.0}, machine_busy_s=5.0)
    assert sum(parts.values()) == pytest.approx(whole(outer["a"]))


# ---------------------------------------------------------------- idle baseline


def test_idle_baseline_is_measured_and_subtracted(tmp_path):
    with intel_two_socket(tmp_path, package_w=60.0, dram_w=8.0):
        settings = with_idle_baseline(EnergySettings(idle_baseline_s=0.7), rapl_root=tmp_path)
        assert settings.idle_watts["cpu"] == pytest.approx(120.0, rel=0.1)
        assert settings.idle_watts["dram"] == pytest.approx(16.0, rel=0.1)
        assert set(settings.idle_watts) == {"cpu", "dram"}  # no counter for the GPU here
        meter = make_meter(settings, rapl_root=tmp_path, attribute=False)
        meter.begin_window("w")
        time.sleep(0.7)
        measured = meter.end_window("w")
    # the machine does nothing but idle, so almost nothing is left once idle is removed
    assert measured.component("cpu").energy_kwh * J_PER_KWH < 0.1 * 120.0 * measured.duration_s
    assert measured.as_record()["energy_idle_baseline_w_cpu"] == settings.idle_watts["cpu"]


def test_idle_baseline_skips_estimates():
    settings = with_idle_baseline(EnergySettings(idle_baseline_s=0.1))
    assert settings.idle_watts == {}
    assert with_idle_baseline(EnergySettings()).idle_watts is None


# ---------------------------------------------------------------- the trial's record


def test_trial_settings_pickle_and_final_record_carries_components():
    settings = TrialSettings(objective="tests.objectives_for_tests:quadratic", metric="accuracy",
                             energy=EnergySettings(overrides={"gpu": {"watts": 100.0}}), report_interval_s=2.0)
    assert pickle.loads(pickle.dumps(settings)) == settings
    meter = make_meter(settings.energy)
    meter.begin_window("trial")
    _burn(0.1)
    measured = meter.end_window("trial")
    meter.close()
    record = _final_record("returned", {"accuracy": 0.9}, {}, 0, measured, "accuracy")
    for key in ("energy_gpu_kwh", "energy_cpu_kwh", "energy_dram_kwh", "energy_source_gpu", "energy_uncertainty_cpu",
                "hw_cpu_model", "hw_gpu_names", "hw_node"):
        assert key in record, key
    reported = _final_record("returned", {"accuracy": 0.9, "energy_kwh": 0.5}, {}, 0, measured, "accuracy")
    assert reported["energy_source"] == "reported" and reported["hw_node"] == record["hw_node"]
