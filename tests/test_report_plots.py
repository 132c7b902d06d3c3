"""Parallel-coordinates and slice plots on trial tables whose content is known (no Ray, no browser).

What the browser draws from these figures is checked in tests/test_report_browser.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from tests.report_tables import SPACE, TUNABLE, synthetic_result
from tuner.reporting import build_report
from tuner.reporting.parallel import parallel_figure
from tuner.reporting.slices import slices_figure


def test_parallel_coordinates_draw_each_completed_trial_on_the_search_space():
    result = synthetic_result()
    done = result.completed
    (trace,) = parallel_figure(result).data
    dims = {d.label: d for d in trace.dimensions}
    assert list(dims) == ["lr (log)", "epochs", "width (log)", "optimizer", "accuracy", "energy kWh (log)"]
    # Log-scale parameters: log10 of the values, the axis spanning the whole search range,
    # ticks labelled in the parameter's own units.
    assert np.allclose(dims["lr (log)"].values, np.log10(done["lr"]))
    assert tuple(dims["lr (log)"].range) == pytest.approx((-4, -1))
    assert dims["lr (log)"].ticktext[0] == "0.0001" and dims["lr (log)"].ticktext[-1] == "0.1"
    assert tuple(dims["epochs"].range) == (1, 20)
    # A choice: one tick per declared value, each trial at its value's index.
    assert list(dims["optimizer"].ticktext) == SPACE["optimizer"]["values"]
    assert list(dims["optimizer"].values) == [SPACE["optimizer"]["values"].index(v) for v in done["optimizer"]]
    assert np.allclose(dims["accuracy"].values, done["accuracy"])
    assert np.allclose(dims["energy kWh (log)"].values, np.log10(done["energy_kwh"]))
    assert np.allclose(trace.line.color, done["accuracy"]) and not trace.line.reversescale
    # The four trials it leaves out are named in the title, by status.
    assert len(done) == 36
    assert "36 completed trials (2 failed, 2 stopped by budget not drawn" in parallel_figure(result).layout.title.text


def test_the_result_draws_them_in_a_notebook():
    result = synthetic_result()
    assert result.plot_parallel().data[0].type == "parcoords"
    assert {t.type for t in result.plot_slices().data} == {"scatter"}


def test_parallel_coordinates_put_the_best_colour_on_a_minimised_metric():
    result = synthetic_result(mode="min")
    result.mode = "min"
    (trace,) = parallel_figure(result).data
    assert trace.line.reversescale


def test_slices_put_each_parameter_on_its_own_axis_type():
    result = synthetic_result()
    fig = slices_figure(result)
    layout = fig.layout
    # Rows follow the search space; two columns: metric, then energy.
    for row, (name, param) in enumerate(TUNABLE.items()):
        for col in (1, 2):
            axis = layout[f"xaxis{2 * row + col if 2 * row + col > 1 else ''}"]
            if param["type"] == "choice":
                assert axis.type == "category" and list(axis.categoryarray) == param["values"]
            else:
                assert axis.type == ("log" if param.get("log") else "linear")
            assert axis.title.text.startswith(name)
    # Energy spans more than a decade: its column is on a log axis, the metric's is not.
    assert layout.yaxis2.type == "log" and layout.yaxis.type != "log"


def test_slices_show_failed_trials_in_the_energy_column_only():
    result = synthetic_result()
    fig = slices_figure(result)
    first_row = [t for t in fig.data if t.xaxis in ("x", "x2")]
    metric_side = {t.name: len(t.x) for t in first_row if t.xaxis == "x"}
    energy_side = {t.name: len(t.x) for t in first_row if t.xaxis == "x2"}
    assert metric_side == {"completed": 36, "stopped by budget": 2}
    assert energy_side == {"completed": 36, "stopped by budget": 2, "failed": 2}
    failed = next(t for t in first_row if t.xaxis == "x2" and t.name == "failed")
    expected = result.trials[result.trials["status"] == "failed"]
    assert list(failed.x) == pytest.approx(expected["lr"].tolist())
    assert list(failed.y) == pytest.approx(expected["energy_kwh"].tolist())
    assert "2 failed without accuracy: energy column only" in fig.layout.title.text
    # One legend entry per status, however many panels it appears in.
    assert sorted(t.name for t in fig.data if t.showlegend) == ["completed", "failed", "stopped by budget"]


def test_choice_values_read_back_from_csv_land_on_their_category():
    # trials.csv turns a choice of ints [1, 2] into 1.0/2.0; they must still plot as "1"/"2".
    result = synthetic_result(search_space={**SPACE, "optimizer": {"type": "choice", "values": [1, 2]}})
    result.trials["optimizer"] = np.where(result.trials["optimizer"] == "adam", 1.0, 2.0)
    fig = slices_figure(result)
    xs = {v for t in fig.data if t.xaxis == "x7" for v in t.x}
    assert xs == {"1", "2"}
    (trace,) = parallel_figure(result).data
    assert set(trace.dimensions[3].values) == {0, 1}


@pytest.mark.parametrize("completed", [0, 1])
def test_a_study_with_fewer_than_two_completed_trials_gets_a_note_not_a_plot(tmp_path: Path, completed: int):
    result = synthetic_result(n=3, failed=3 - completed, stopped=0)
    with pytest.raises(ValueError, match=f"this study has {completed}"):
        parallel_figure(result)
    with pytest.raises(ValueError, match=f"this study has {completed}"):
        slices_figure(result)
    files = build_report(result, tmp_path)
    assert "parallel_html" not in files and "slices_html" not in files
    assert not (tmp_path / "parallel.html").exists() and not (tmp_path / "slices.html").exists()
    page = files["report"].read_text()
    for label in ("Parallel coordinates", "Slice plots"):
        assert f"{label} not drawn: needs at least 2 completed trials; this study has {completed}" in page
    assert "pareto_html" in files  # the Pareto plot still shows what the trials cost


def test_log_ticks_stand_for_the_values_they_label():
    (trace,) = parallel_figure(synthetic_result()).data
    width = next(d for d in trace.dimensions if d.label == "width (log)")
    for tick, text in zip(width.tickvals, width.ticktext, strict=True):
        assert float(text) == pytest.approx(10 ** tick, rel=1e-2)
    assert math.isclose(float(width.ticktext[0]), 16) and math.isclose(float(width.ticktext[-1]), 256)
