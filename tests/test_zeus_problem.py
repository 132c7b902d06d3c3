"""The Zeus-trace tuning problem of benchmarks/zeus_traces.py is built as the issue defines it."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("GREENTUNE_DATA") or ROOT.parent / "shared" / "data")
pytestmark = pytest.mark.skipif(not (DATA / "zeus" / "summary_train.csv").is_file(),
                                reason=f"Zeus traces not found under {DATA / 'zeus'} (set GREENTUNE_DATA)")
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_squad_problem_matches_its_definitions():
    import pandas as pd
    import zeus_traces as z

    problem = z.load_problem(DATA, "squad/rtx6000")
    power = pd.read_csv(DATA / "zeus" / "summary_power_rtx6000.csv")
    row = power[(power.dataset == "squad") & (power.batch_size == 16) & (power.power_limit == 200)].iloc[0]
    # energy = epochs x time_per_epoch x average_power, in kWh
    assert problem.energy_kwh(16, 200, 3) == pytest.approx(3 * row.time_per_epoch * row.average_power / 3.6e6)
    # accuracy is the best target metric reached by that epoch, per run; expected = mean over runs
    curves = problem.curves[16]
    assert (curves[:, 1:] >= curves[:, :-1]).all()
    assert problem.expected_accuracy(16, 5) == pytest.approx(curves[:, 5].mean())
    # the whole space spans [0, 1] on both normalised axes, and the true front is its hypervolume
    everything = [(b, p, e) for b in problem.batch_sizes for p in problem.power_limits
                  for e in range(1, problem.max_epochs + 1)]
    points = [problem.normalised(*c) for c in everything]
    assert min(a for a, _ in points) == pytest.approx(0) and max(a for a, _ in points) == pytest.approx(1)
    assert min(e for _, e in points) == pytest.approx(0) and max(e for _, e in points) == pytest.approx(1)
    assert problem.hv_fraction(everything) == pytest.approx(1.0)
    # grid: all batch sizes x power limits x 5 epoch levels; budgets are fractions of its kWh
    grid = problem.grid_configs()
    assert len(grid) == len(problem.batch_sizes) * len(problem.power_limits) * 5
    assert problem.grid_kwh == pytest.approx(sum(problem.energy_kwh(*c) for c in grid))
    assert 0 < problem.hv_fraction(grid) <= 1.0


def test_cifar100_is_capped_at_100_epochs():
    import zeus_traces as z

    problem = z.load_problem(DATA, "cifar100/v100")
    assert problem.max_epochs == 100
    assert math.isclose(problem.hv_fraction([(b, p, 100) for b in problem.batch_sizes
                                             for p in problem.power_limits]) * problem.true_hv,
                        z.hypervolume([problem.normalised(b, p, 100) for b in problem.batch_sizes
                                       for p in problem.power_limits]))
