"""``gpu_power_limit_w``: applied through NVML (mW, within constraints), restored, checked up front."""

from __future__ import annotations

from pathlib import Path

import pytest

import tuner
from tests.fakes.fake_pynvml import FakeGpu, FakeNvml
from tests.fakes.traces import SineTrace
from tuner.config import ConfigError, load_config
from tuner.energy.power_limit import PowerLimitError, check_power_limit_access, gpu_power_limit


def _fleet(**kwargs) -> FakeNvml:
    return FakeNvml([FakeGpu(f"GPU {i}", f"GPU-{i}{i}{i}", SineTrace(100.0 * (i + 1))) for i in range(2)], **kwargs)


def _limits(fake: FakeNvml) -> list[int]:
    fake.nvmlInit()
    try:
        return [fake.nvmlDeviceGetPowerManagementLimit(d) for d in fake.devices]
    finally:
        fake.nvmlShutdown()


def test_limit_applies_in_milliwatts_to_the_assigned_gpu_only_and_is_restored():
    fake = _fleet()
    with gpu_power_limit(212.5, ["1"], nvml_module=fake):
        assert _limits(fake) == [400_000, 212_500]
    assert _limits(fake) == [400_000, 400_000]
    assert fake.initialised == 0


def test_limit_by_uuid_is_restored_when_the_block_raises():
    fake = _fleet()
    with pytest.raises(RuntimeError, match="objective broke"):
        with gpu_power_limit(150, ["GPU-000"], nvml_module=fake):
            assert _limits(fake) == [150_000, 400_000]
            raise RuntimeError("objective broke")
    assert _limits(fake) == [400_000, 400_000]


def test_limit_restores_the_value_it_found_not_the_default():
    fake = _fleet()
    fake.devices[0].limit_mw = 300_000
    with gpu_power_limit(200, ["0"], nvml_module=fake):
        pass
    assert _limits(fake)[0] == 300_000


def test_out_of_range_names_the_range_and_touches_no_gpu():
    fake = _fleet()
    fake.devices[1].limit_range_mw = (150_000, 250_000)
    with pytest.raises(PowerLimitError, match=r"gpu_power_limit_w 120 W is outside GPU 1 \(GPU 1\)'s range 150-250 W"):
        with gpu_power_limit(120, ["0", "1"], nvml_module=fake):
            pass
    assert _limits(fake) == [400_000, 400_000] and "set_limit" not in fake.devices[0].calls


def test_no_permission_is_a_clear_error():
    fake = _fleet(privileged=False)
    with pytest.raises(PowerLimitError, match="needs root"):
        with gpu_power_limit(200, ["0"], nvml_module=fake):
            pass
    assert _limits(fake) == [400_000, 400_000]


def test_no_nvml_is_a_clear_error():
    import pynvml

    with pytest.raises(PowerLimitError, match="gpu_power_limit_w needs NVML"):
        with gpu_power_limit(200, ["0"], nvml_module=_fleet(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED)):
            pass


def test_access_check_covers_the_whole_searched_range_and_changes_nothing():
    fake = _fleet()
    assert check_power_limit_access(100, 400, ["0", "1"], nvml_module=fake) == ["GPU 0", "GPU 1"]
    assert _limits(fake) == [400_000, 400_000]
    with pytest.raises(PowerLimitError, match="100-450 W is outside"):
        check_power_limit_access(100, 450, ["0"], nvml_module=fake)
    with pytest.raises(PowerLimitError, match="needs root"):
        check_power_limit_access(100, 400, ["0"], nvml_module=_fleet(privileged=False))


def _config(**overrides):
    return {"objective": "tests.objectives_for_tests:quadratic", "budget_kwh": 0.001,
            "search_space": {"x": {"type": "float", "low": 0, "high": 1},
                             "gpu_power_limit_w": {"type": "int", "low": 150, "high": 250}},
            "resources_per_trial": {"cpu": 1, "gpu": 1}, **overrides}


@pytest.mark.parametrize("gpu", [0, 0.5, 1.5])
def test_power_limit_needs_whole_gpus(gpu):
    with pytest.raises(ConfigError, match=r"gpu_power_limit_w needs whole GPUs.*resources_per_trial.gpu"):
        load_config(_config(resources_per_trial={"cpu": 1, "gpu": gpu}))


def test_power_limit_values_must_be_watts():
    space = {"x": {"type": "float", "low": 0, "high": 1},
             "gpu_power_limit_w": {"type": "choice", "values": ["low", "high"]}}
    with pytest.raises(ConfigError, match="gpu_power_limit_w must hold numbers of watts"):
        load_config(_config(search_space=space))
    assert load_config(_config()).power_limit_range_w == (150.0, 250.0)


@pytest.mark.ray
def test_study_without_gpus_fails_before_any_trial(ray_session, tmp_path: Path):
    with pytest.raises(ConfigError, match="gpu_power_limit_w needs GPUs, but the Ray cluster has 0 GPU"):
        tuner.tune(_config(output_dir=tmp_path / "study"), progress=False)
    assert not (tmp_path / "study").exists()


def test_gpu_cifar10_example_validates_without_importing_torchvision():
    import sys

    repo = Path(__file__).resolve().parents[1]
    cfg = load_config(repo / "examples" / "gpu_cifar10.yaml")
    assert cfg.resources_per_trial.gpu == 1 and cfg.power_limit_range_w == (150.0, 250.0)
    assert set(cfg.tunable) == {"lr", "batch_size", "epochs", "gpu_power_limit_w"}
    assert callable(tuner.config.resolve_objective(cfg.objective))
    assert "torchvision" not in sys.modules  # imported only inside a running trial
