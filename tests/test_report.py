"""The study report on trial tables whose answers are known (no Ray)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.report_tables import SPACE, synthetic_result
from tuner.carbon.static import StaticProvider
from tuner.config import config_dump
from tuner.pareto import hypervolume, reference_point
from tuner.reporting import build_report
from tuner.reporting.budget_curve import (
    BUDGET_POINTS,
    MIN_RESULT_SHARE,
    budget_curves,
    curve_by_energy,
    curve_by_trials,
    expected_max,
)
from tuner.reporting.load import load_from_dir
from tuner.reporting.pareto import pareto_matplotlib, pareto_png
from tuner.reporting.price import grid_estimate, price_tag
from tuner.reporting.progress import hypervolume_progress, progress_figure
from tuner.reporting.sensitivity import R2_THRESHOLD, sensitivity, sensitivity_figure
from tuner.result import TuneResult
from tuner.study.files import StudyFiles, trials_frame
from tuner.study.ledger import EnergyLedger
from tuner.study.record import final_result, running_result

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------ budget curve


def test_expected_max_matches_hand_computed_values():
    values = [0.9, 0.6, 0.7]  # sorted: 0.6, 0.7, 0.9
    mean, var = expected_max(values, [1, 2, 3])
    # n=1: the plain mean and variance of the three values.
    assert mean[0] == pytest.approx((0.6 + 0.7 + 0.9) / 3)
    assert var[0] == pytest.approx((0.36 + 0.49 + 0.81) / 3 - ((0.6 + 0.7 + 0.9) / 3) ** 2)
    # n=2: weights 1/9, 3/9, 5/9 -> 0.0667 + 0.2333 + 0.5 = 0.8; E[v^2] = 0.6533.
    assert mean[1] == pytest.approx(0.8)
    assert var[1] == pytest.approx(0.36 / 9 + 0.49 * 3 / 9 + 0.81 * 5 / 9 - 0.64)
    # n=3: weights 1/27, 7/27, 19/27.
    assert mean[2] == pytest.approx((0.6 + 0.7 * 7 + 0.9 * 19) / 27)
    # A minimised metric: the expected best of two draws is the expected minimum.
    low, _ = expected_max(values, 2, mode="min")
    assert low[0] == pytest.approx(0.6 * 5 / 9 + 0.7 * 3 / 9 + 0.9 * 1 / 9)


def test_curve_by_trials_rises_to_the_best_value():
    curve = curve_by_trials(np.array([0.6, 0.7, 0.9]))
    assert curve["n_trials"].tolist() == [1, 2, 3]
    assert curve["expected_best"].is_monotonic_increasing
    assert curve["std"].iloc[0] == pytest.approx(math.sqrt(expected_max([0.6, 0.7, 0.9], 1)[1][0]))


def test_curve_by_energy_matches_hand_computed_budget_outcomes():
    # A: accuracy 0.5 for 1 kWh; B: 0.9 for 3 kWh. With 3 kWh: a sequence starting with B
    # ends with B (0.9); one starting with A never fits B after it, so ends at 0.5.
    # Expected best = 0.7, standard deviation = 0.2. With 2 kWh only A-starts give a result;
    # the B-starts have none and score the worst trial (0.5), as every sequence does at 0.5 kWh.
    curve = curve_by_energy(np.array([0.5, 0.9]), np.array([1.0, 3.0]), np.array([0.5, 2.0, 3.0]),
                            sequences=20000).set_index("budget_kwh")
    assert curve.loc[0.5, "p_result"] == 0 and curve.loc[0.5, "expected_best"] == 0.5
    assert curve.loc[2.0, "p_result"] == pytest.approx(0.5, abs=0.02)
    assert curve.loc[2.0, "expected_best"] == pytest.approx(0.5)
    assert curve.loc[3.0, "p_result"] == 1.0
    assert curve.loc[3.0, "expected_best"] == pytest.approx(0.7, abs=0.01)
    assert curve.loc[3.0, "std"] == pytest.approx(0.2, abs=0.01)


def test_curve_by_energy_with_equal_costs_is_the_closed_form():
    values = np.array([0.2, 0.5, 0.6, 0.8, 0.95])
    curve = curve_by_energy(values, np.full(5, 2.0), np.array([2.0, 6.0, 10.0]), sequences=20000)
    mean, var = expected_max(values, [1, 3, 5])
    assert curve["expected_best"].to_numpy() == pytest.approx(mean, abs=0.01)
    assert curve["std"].to_numpy() == pytest.approx(np.sqrt(var), abs=0.01)
    assert curve["mean_trials"].tolist() == [1, 3, 5]


@FAST
@given(tables=st.integers(1, 12).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-5, 5, allow_nan=False), min_size=n, max_size=n),
    st.lists(st.floats(1e-6, 10.0, allow_nan=False), min_size=n, max_size=n))),
    mode=st.sampled_from(["max", "min"]), seed=st.integers(0, 2**16))
def test_budget_curve_by_energy_is_monotone_by_construction(tables, mode, seed):
    metric, energy = (np.array(v) for v in tables)
    budgets = np.sort(np.random.default_rng(seed).uniform(0, 2 * energy.sum(), 25))
    curve = curve_by_energy(metric, energy, budgets, mode=mode, sequences=200, seed=seed)
    steps = np.diff(curve["expected_best"].to_numpy())
    assert (steps >= 0).all() if mode == "max" else (steps <= 0).all(), curve
    assert np.diff(curve["p_result"]).min(initial=0) >= 0
    worst = metric.min() if mode == "max" else metric.max()
    best = metric.max() if mode == "max" else metric.min()
    slack = 1e-12 * max(1.0, abs(worst), abs(best))  # a mean of equal values may round
    assert curve["expected_best"].between(min(worst, best) - slack, max(worst, best) + slack).all()


def test_budget_curve_csv_holds_only_the_budgets_it_draws(tmp_path: Path):
    # Energy spans four decades, so the lowest budgets leave most sequences without a result.
    result = synthetic_result()
    result.trials["energy_kwh"] = np.geomspace(1e-6, 1e-2, len(result.trials))
    by_energy, _ = budget_curves(result)
    assert (by_energy["p_result"] >= MIN_RESULT_SHARE).all() and by_energy["expected_best"].is_monotonic_increasing
    files = build_report(result, tmp_path)
    written = pd.read_csv(files["budget_curve_kwh_csv"])
    assert len(written) == len(by_energy) < BUDGET_POINTS and written["p_result"].min() >= MIN_RESULT_SHARE


# ------------------------------------------------------------------ sensitivity


def _well_formed(table: pd.DataFrame) -> None:
    """Shares of variance, first order inside total, each inside its interval."""
    for name in ("first_order", "total_order"):
        assert (table[f"{name}_low"] <= table[name]).all() and (table[name] <= table[f"{name}_high"]).all()
        assert table[f"{name}_low"].min() >= 0 and table[f"{name}_high"].max() <= 1
    for suffix in ("", "_low", "_high"):
        assert (table[f"first_order{suffix}"] <= table[f"total_order{suffix}"]).all()


def test_the_one_parameter_that_matters_ranks_first_with_an_interval_above_zero():
    # Accuracy depends on lr alone (plus 0.005 noise); energy on epochs alone (1 % ripple from width).
    up = sensitivity(synthetic_result(accuracy_sign=1.0))
    assert up.checks["accuracy"].passed and up.checks["accuracy"].cv_r2 > 0.9
    assert "Gaussian process" in up.method and "36 completed trials" in up.method
    _well_formed(up.table)
    assert up.ranking("accuracy")[0] == "lr"
    rows = up.table[up.table["objective"] == "accuracy"].set_index("parameter")
    assert rows.loc["lr", "direction"] == "+"
    assert rows.loc["lr", "first_order_low"] > 0.5 and rows.loc["lr", "total_order_low"] > 0.5
    assert rows.drop("lr")["total_order_high"].max() < 0.05  # the others: nothing, and the interval says so

    down = sensitivity(synthetic_result(accuracy_sign=-1.0, seed=1))
    assert down.ranking("accuracy")[0] == "lr"
    lr = down.table.set_index(["objective", "parameter"]).loc[("accuracy", "lr")]
    assert lr["direction"] == "-" and lr["total_order_low"] > 0.5


def test_energy_linear_in_epochs_is_dominated_by_epochs():
    found = sensitivity(synthetic_result())
    assert found.ranking("energy_kwh")[0] == "epochs"
    rows = found.table[found.table["objective"] == "energy_kwh"].set_index("parameter")
    assert rows.loc["epochs", "direction"] == "+"
    assert rows.loc["epochs", "total_order_low"] > 0.8
    assert rows.drop("epochs")["total_order_high"].max() < 0.05
    assert rows.loc["optimizer", "direction"] == "categorical"


def test_a_noise_only_metric_fails_the_fit_check_and_gets_no_bars(tmp_path: Path):
    result = synthetic_result(seed=3)
    result.trials["accuracy"] = np.random.default_rng(5).normal(0.7, 0.05, len(result.trials))
    found = sensitivity(result)
    check = found.checks["accuracy"]
    assert not check.passed and check.cv_r2 < R2_THRESHOLD
    assert check.note == f"model does not fit: 5-fold CV R^2 = {check.cv_r2:.2f} < 0.5; no indices drawn"
    assert set(found.table["objective"]) == {"energy_kwh"}  # energy still depends on epochs
    metric_panel, energy_panel = sensitivity_figure(found, "accuracy").axes[:2]
    assert not metric_panel.patches and energy_panel.patches
    assert any("model does not fit" in t.get_text() for t in metric_panel.texts)

    files = build_report(result, tmp_path)
    csv = pd.read_csv(files["sensitivity_csv"])
    metric_rows = csv[csv["objective"] == "accuracy"]
    assert len(metric_rows) == 4 and metric_rows["total_order"].isna().all()
    assert (metric_rows["fit"] == check.note).all() and metric_rows["cv_r2"].iloc[0] == pytest.approx(check.cv_r2)
    assert (csv.loc[csv["objective"] == "energy_kwh", "fit"] == "passed").all()
    page = files["report"].read_text()
    assert "model does not fit: 5-fold CV R^2" in page


def test_too_few_trials_get_an_explicit_note_not_a_model(tmp_path: Path):
    # 7 trials, 4 parameters: a model needs parameters + 3 = 7 completed ones; 5 completed.
    result = synthetic_result(n=7, failed=1, stopped=1)
    found = sensitivity(result)
    assert found.table.empty and found.method == "none"
    assert found.note == "not enough data: 5 completed trials, sensitivity needs parameters + 3 = 7 (4 tunable parameters)"
    assert all(not c.passed and c.cv_r2 is None for c in found.checks.values())
    figure = sensitivity_figure(found, "accuracy")
    assert not any(ax.patches for ax in figure.axes)
    files = build_report(result, tmp_path)
    csv = pd.read_csv(files["sensitivity_csv"])
    assert len(csv) == 8 and csv["first_order"].isna().all() and (csv["fit"] == found.note).all()
    assert found.note in files["report"].read_text()


def _live_study(tmp_path: Path, trials: pd.DataFrame, config) -> tuple[TuneResult, Path]:
    """What a finished study holds: its trials booked through a real ledger from the
    results a trial process sends, the table the study builds from it, and its files."""
    ledger = EnergyLedger(config.budget_kwh, watts_per_core=10.0, metric="accuracy")
    for _, row in trials.iterrows():
        params = {name: row[name].item() if hasattr(row[name], "item") else row[name] for name in SPACE}
        ledger.start(row["trial_id"], params)
        metrics = {} if pd.isna(row["accuracy"]) else {"accuracy": float(row["accuracy"])}
        energy = {"energy_kwh": float(row["energy_kwh"]), "energy_source": "cpu-time-estimate",
                  "duration_s": float(row["duration_s"])}
        if row["status"] == "stopped_by_budget":  # ended by Ray before its final report
            ledger.observe(row["trial_id"], running_result(metrics, energy, 1, [], "seg", False))
            ledger.stop(row["trial_id"])
        else:
            error = "RuntimeError: deliberate" if row["status"] == "failed" else None
            ledger.observe(row["trial_id"], final_result(metrics, energy, 1, [], "seg", "node", error))
    table = trials_frame(ledger, list(SPACE), "accuracy")
    state = {"total_energy_kwh": ledger.total_kwh, "overhead_kwh": ledger.overhead_kwh, "config": config_dump(config)}
    files = StudyFiles(tmp_path / "study")
    files.directory.mkdir()
    files.write_trials(table)
    files.write_state(state)
    return TuneResult.from_state(table, config, state, output_dir=files.directory), files.directory


def test_the_rebuilt_report_shows_the_live_reports_numbers_and_figures(tmp_path: Path):
    synthetic = synthetic_result()
    live, study_dir = _live_study(tmp_path, synthetic.trials, synthetic.config)
    assert live.trials["status"].value_counts().to_dict() == {"completed": 36, "failed": 2, "stopped": 2}
    live_files = build_report(live, tmp_path / "live")
    rebuilt_files = build_report(load_from_dir(study_dir), tmp_path / "rebuilt")
    for name in ("sensitivity_csv", "sensitivity_png", "budget_curve_kwh_csv", "progress_csv", "progress_png"):
        assert live_files[name].read_bytes() == rebuilt_files[name].read_bytes(), name
    sens = pd.read_csv(live_files["sensitivity_csv"])
    assert (sens["fit"] == "passed").all() and sens.loc[sens["objective"] == "accuracy"].iloc[0]["parameter"] == "lr"


# ------------------------------------------------------------------ price tag and grid estimate


def test_grid_estimate_recovers_an_exactly_log_linear_energy():
    result = synthetic_result()
    # Grid levels at resolution 3: epochs {1, 10, 20} (10.5 rounds to 10), width {16, 64, 256}
    # (ripple factors 1, 1.005, 1.01), 3 learning rates, 2 optimisers.
    truth = 1e-4 * (1 + 10 + 20) * (1 + 1.005 + 1.01) * 3 * 2
    grid = grid_estimate(result)
    assert grid.points == 3 * 3 * 3 * 2
    # the mean of 400 joint draws, each with the model's noise floor: within half a percent
    assert grid.kwh == pytest.approx(truth, rel=5e-3)
    assert grid.kwh_low <= truth <= grid.kwh_high and grid.kwh_low <= grid.kwh <= grid.kwh_high


def test_price_tag_totals_match_the_trials_table():
    result = synthetic_result(report={"price_per_kwh": 0.5, "currency": "USD", "co2_kg_per_kwh": 0.2}, pue=1.5)
    tag = price_tag(result)
    trials_kwh = result.trials["energy_kwh"].sum()
    assert tag.trials_kwh == pytest.approx(trials_kwh)
    assert tag.total_kwh == pytest.approx(trials_kwh + 2e-4)
    assert tag.facility_kwh == pytest.approx(1.5 * (trials_kwh + 2e-4))
    assert tag.cost == pytest.approx(0.5 * tag.facility_kwh) and tag.currency == "USD"
    assert tag.co2_kg == pytest.approx(0.2 * tag.facility_kwh) and "not measured" in tag.co2_source
    assert tag.trials_by_status == {"completed": 36, "failed": 2, "stopped_by_budget": 2}
    assert tag.device_hours["CPU core-hours reserved"] == pytest.approx(result.trials["duration_s"].sum() / 3600)


def test_price_tag_prefers_measured_co2():
    result = synthetic_result()
    result.trials["co2_kg"] = 0.001
    tag = price_tag(result)
    world = StaticProvider().current().g_per_kwh / 1000  # the static provider's world average
    assert tag.co2_kg == pytest.approx(0.04 + 2e-4 * world) and "co2_kg" in tag.co2_source
    result.co2_kg = 0.123
    result.carbon = {"carbon_provider": "static"}
    measured = price_tag(result)
    assert measured.co2_kg == 0.123 and "static" in measured.co2_source


def test_unmeasured_co2_falls_back_on_the_static_providers_world_average():
    tag = price_tag(synthetic_result())
    world = StaticProvider().current()
    assert tag.co2_kg == pytest.approx(tag.facility_kwh * world.g_per_kwh / 1000)
    assert "world average" in tag.co2_source and "not measured" in tag.co2_source
    configured = price_tag(synthetic_result(report={"co2_kg_per_kwh": 0.1}))
    assert configured.co2_kg == pytest.approx(configured.facility_kwh * 0.1)
    assert "configured intensity" in configured.co2_source


# ------------------------------------------------------------------ progress


def test_hypervolume_never_falls_and_ends_at_the_full_fronts_absolute_value():
    result = synthetic_result()
    table = hypervolume_progress(result)
    assert table["cumulative_kwh"].iloc[-1] == pytest.approx(result.trials["energy_kwh"].sum())
    assert table["hypervolume"].is_monotonic_increasing
    assert (table["hypervolume"].iloc[:4] == 0).all()  # the first four rows failed or were stopped
    # Accuracy in [0, 1] and budget 1 kWh: the reference is (0, 1 kWh), whatever the trials.
    assert reference_point(result) == (0.0, 1.0)
    assert (table["reference_metric"] == 0.0).all() and (table["reference_kwh"] == 1.0).all()
    done = result.completed
    points = np.column_stack([done["accuracy"], np.log10(1.0 / done["energy_kwh"])])
    assert table["hypervolume"].iloc[-1] == pytest.approx(hypervolume(points, np.zeros(2)))


def _two_trial_result(accuracy: list[float], energy: list[float], **config) -> TuneResult:
    result = synthetic_result(n=len(accuracy), failed=0, stopped=0, **config)
    result.trials["accuracy"], result.trials["energy_kwh"] = accuracy, energy
    return result


def test_hypervolume_is_hand_computed_from_the_reference_point():
    # Budget 1 kWh. (0.8 at 0.01 kWh) -> (0.8, 2 decades); (0.9 at 0.1 kWh) -> (0.9, 1 decade).
    # Area: 0.9 x 1 + 0.8 x (2 - 1) = 1.7 accuracy-decades.
    table = hypervolume_progress(_two_trial_result([0.8, 0.9], [0.01, 0.1]))
    assert table["hypervolume"].tolist() == pytest.approx([0.8 * 2, 1.7])


def test_a_dominating_front_has_the_higher_hypervolume():
    # The same configurations; the better study reaches each accuracy for less energy and
    # a little higher. Per-study normalisation put both at the same final value.
    worse = synthetic_result(seed=4)
    better = synthetic_result(seed=4)
    better.trials["accuracy"] = (better.trials["accuracy"] + 0.05).clip(upper=1.0)
    better.trials["energy_kwh"] = better.trials["energy_kwh"] / 2
    assert reference_point(worse) == reference_point(better)
    final = {name: hypervolume_progress(r)["hypervolume"].iloc[-1] for name, r in (("worse", worse), ("better", better))}
    assert final["better"] > final["worse"] > 0
    # a poor random search that found one mediocre trial stays below both
    poor = _two_trial_result([0.55, 0.6], [5e-3, 1e-2])
    assert hypervolume_progress(poor)["hypervolume"].iloc[-1] < final["worse"]


def test_reference_point_defaults_and_the_configs_own():
    accuracy = synthetic_result()
    assert reference_point(accuracy) == (0.0, accuracy.budget_kwh)
    loss = _two_trial_result([2.5, 1.5], [0.01, 0.1], mode="min")
    assert reference_point(loss) == (2.5, 1.0)  # not in [0, 1]: the worst completed value
    scored = _two_trial_result([-3.0, 7.0], [0.01, 0.1])
    assert reference_point(scored) == (-3.0, 1.0)
    configured = synthetic_result()
    configured.config = configured.config.model_copy(update={"reference_point": {"metric": 0.5, "energy_kwh": None}})
    assert reference_point(configured) == (0.5, configured.budget_kwh)
    figure = progress_figure(configured, hypervolume_progress(configured))
    assert any("accuracy = 0.5 (config), energy = 1 kWh (default)" in t.get_text() for t in figure.axes[0].texts)


# ------------------------------------------------------------------ Pareto plot


def test_pareto_png_without_a_completed_trial_says_so_on_sane_axes(tmp_path: Path):
    result = synthetic_result(n=3, failed=2, stopped=1)
    result.trials["accuracy"] = np.nan
    figure = pareto_matplotlib(result)
    ax = figure.axes[0]
    assert ax.get_ylim() == (0.0, 1.0)
    assert any("no completed trial" in t.get_text() and "2 failed, 1 stopped by budget" in t.get_text()
               for t in ax.texts)
    path = pareto_png(result, tmp_path / "pareto.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ artifacts


def test_report_artifacts_exist_and_match_the_trials_table(tmp_path: Path):
    result = synthetic_result()
    files = build_report(result, tmp_path)
    expected = {"pareto_html", "pareto_png", "parallel_html", "slices_html", "price_tag", "sensitivity_csv",
                "sensitivity_png", "budget_curve_kwh_csv", "budget_curve_trials_csv", "budget_curve_png",
                "progress_csv", "progress_png", "report"}
    assert set(files) == expected and all(p.is_file() and p.stat().st_size > 0 for p in files.values())
    for name in ("pareto_png", "sensitivity_png", "budget_curve_png", "progress_png"):
        assert files[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    front = result.pareto_front
    page = files["report"].read_text()
    # The front table in report.html lists exactly the front's trials, knee marked.
    front_section = page.split("<h2>Pareto front</h2>")[1].split("<h2>")[0]
    listed = re.findall(r"<td>(?:\*)?</td>\s*<td>(t\d{3})</td>", front_section)
    assert listed == front["trial_id"].tolist()
    assert f"<td>*</td>\n      <td>{result.knee()['trial_id']}</td>" in front_section
    for name in ("pareto.html", "parallel.html", "slices.html", "sensitivity.csv", "budget_curve_kwh.csv",
                 "progress.csv", "price_tag.json"):
        assert f"href='{name}'" in page

    # Every trial is in the interactive plot, by status.
    html = files["pareto_html"].read_text()
    for label in ("completed (36)", "failed (2)", "stopped by budget (2)", "Pareto front", "knee (trial"):
        assert label in html
    assert '"type":"log"' in html  # energy spans more than a decade
    assert re.search(r"<script[^>]*\bsrc=", html) is None  # plotly.js inline: renders offline
    first = result.trials.iloc[0]
    hover = f"trial {first['trial_id']} (failed)<br>lr={first['lr']}<br>epochs={first['epochs']}"
    assert hover.replace("<", "\\u003c").replace(">", "\\u003e") in html  # as plotly escapes it

    tag = json.loads(files["price_tag"].read_text())
    assert tag["trials_kwh"] == pytest.approx(result.trials["energy_kwh"].sum())
    assert tag["total_kwh"] == pytest.approx(result.total_energy_kwh)
    assert tag["n_trials"] == 40
    assert f"{tag['total_kwh']:.6g} kWh" in page

    curve = pd.read_csv(files["budget_curve_trials_csv"])
    assert len(curve) == 36 and curve["expected_best"].iloc[-1] <= result.completed["accuracy"].max()
    sens = pd.read_csv(files["sensitivity_csv"])
    assert set(sens["parameter"]) == set(SPACE) - {"threads"} and set(sens["objective"]) == {"accuracy", "energy_kwh"}
    assert {"first_order_low", "total_order_high", "cv_r2", "r2_threshold", "fit"} <= set(sens.columns)
    section = page.split("<h2>Hyperparameter sensitivity</h2>")[1].split("<h2>")[0]
    assert "needed R^2 &gt;= 0.5" in section and "95 % interval" in section
    assert "reference point" in page


def test_rebuild_from_disk_reproduces_the_numbers(tmp_path: Path):
    from tuner.cli import main
    from tuner.config import config_dump

    result = synthetic_result()
    study = tmp_path / "study"
    study.mkdir()
    result.trials.to_csv(study / "trials.csv", index=False)
    (study / "study.json").write_text(json.dumps({
        "name": "synthetic", "mlflow_run_id": None, "total_energy_kwh": result.total_energy_kwh,
        "overhead_kwh": result.overhead_kwh, "config": config_dump(result.config)}, default=str))
    loaded = load_from_dir(study)
    assert loaded.config.search_space == result.config.search_space
    assert loaded.pareto_front["trial_id"].tolist() == result.pareto_front["trial_id"].tolist()

    assert main(["report", str(study), "--output-dir", str(tmp_path / "out")]) == 0
    tag = json.loads((tmp_path / "out" / "price_tag.json").read_text())
    assert tag["total_kwh"] == pytest.approx(result.total_energy_kwh)
    assert tag["grid"]["kwh"] == pytest.approx(grid_estimate(result).kwh)
    assert (tmp_path / "out" / "report.html").is_file()


def test_report_of_a_directory_that_is_not_a_study_exits_2(tmp_path: Path, capsys):
    from tuner.cli import main

    assert main(["report", str(tmp_path)]) == 2
    assert "trials.csv, study.json missing" in capsys.readouterr().err


def test_report_settings_are_validated_naming_the_field():
    from tests.report_tables import study_config
    from tuner.config import ConfigError

    with pytest.raises(ConfigError, match=r"report\.price_per_kwh"):
        study_config(report={"price_per_kwh": -1})
    with pytest.raises(ConfigError, match="did you mean 'currency'"):
        study_config(report={"curency": "USD"})


def test_loading_the_report_package_leaves_tuner_report_the_function():
    import tuner
    import tuner.reporting.build  # noqa: F401

    assert callable(tuner.report) and tuner.report.__module__ == "tuner.trial"
