"""``greentune meter -- CMD``: measures the command's process tree, passes its exit code on."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tuner.cli import main
from tuner.energy import J_PER_KWH

BURN = "import time\nend=time.process_time()+0.5\nwhile time.process_time()<end: sum(range(1000))"


def test_meter_measures_a_command_and_writes_json(tmp_path, capsys):
    out = tmp_path / "energy.json"
    code = main(["meter", "--watts-per-core", "20", "-o", str(out), "--", sys.executable, "-c", BURN])
    assert code == 0
    record = json.loads(out.read_text())
    assert record["command"][0] == sys.executable and record["returncode"] == 0
    assert record["cpu_time_s"] >= 0.5
    assert record["energy_source_cpu"] == "cpu-time-estimate"
    assert record["energy_cpu_kwh"] * J_PER_KWH == pytest.approx(record["cpu_time_s"] * 20, rel=0.05)  # two tree readings, ms apart
    assert "watts_per_core 20 W given" in record["energy_fallback_cpu"]
    table = capsys.readouterr().err
    for row in (" cpu ", " dram ", " gpu ", " total ", "cpu-time-estimate", "gpu: NVML unavailable"):
        assert row in table


def test_exit_code_is_passed_on_and_json_goes_to_stdout():
    done = subprocess.run(
        [sys.executable, "-m", "tuner.cli", "meter", "--json", "--", sys.executable, "-c", "import sys; sys.exit(3)"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 3
    record = json.loads(done.stdout)
    assert record["returncode"] == 3 and record["energy_source_gpu"] == "absent"
    assert "Energy of" in done.stderr


def test_bad_input_is_refused_before_running(capsys):
    assert main(["meter", "--", "no-such-command-xyz"]) == 2
    assert "command 'no-such-command-xyz' not found" in capsys.readouterr().err
    assert main(["meter", "--sample-interval", "0", "--", "true"]) == 2
    assert "--sample-interval" in capsys.readouterr().err
    assert main(["meter"]) == 2
