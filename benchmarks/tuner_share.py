"""The tuner's own share of the quickstart's kWh, for this checkout and an older one, side by side.

    python benchmarks/tuner_share.py --before /path/to/old/checkout
    python benchmarks/tuner_share.py                 # this checkout alone
    python benchmarks/tuner_share.py --child /path/to/checkout   # one study, one JSON line
    python benchmarks/tuner_share.py --child /path/to/checkout --seed 1   # another seed than the YAML's 0
    python benchmarks/tuner_share.py --child /path/to/checkout --parts   # and where the tuner's CPU went

Runs ``examples/quickstart.yaml`` through ``tuner.tune`` once per checkout, both at the same
time (each on its own local Ray, the second started a minute later), so both see the same load on a shared machine. The
tuner's share is the study's ``overhead_kwh`` (driver CPU spent choosing trials: BO steps,
the energy model, the optimiser's snapshots) over its total kWh; issue 21's goal is at most
3 %. Prints each study's trials, wall time, total and overhead kWh, the tuner's CPU
seconds per trial, the median trial's kWh, the best accuracy, the Pareto front's size and
its hypervolume (accuracy against kWh, from the fixed reference :data:`HV_REFERENCE`, as a
share of the box up to accuracy 1 and 0 kWh), and the after/before ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
STAGGER_S = 60.0
HV_REFERENCE = (0.5, 1e-4)  # (accuracy, kWh): the quickstart's trials lie within it


def quickstart_hypervolume(accuracy: Any, kwh: Any) -> float:
    """Share of the box from :data:`HV_REFERENCE` to (accuracy 1, 0 kWh) that the trials dominate."""
    from tuner.pareto import hypervolume  # the checkout's own: the same measure in both studies

    points = np.column_stack([np.asarray(accuracy, float), -np.asarray(kwh, float)])
    area = hypervolume(points, np.array([HV_REFERENCE[0], -HV_REFERENCE[1]]))
    return area / ((1.0 - HV_REFERENCE[0]) * HV_REFERENCE[1])


def child(checkout: Path, seed: int | None = None, parts: bool = False) -> None:
    """One quickstart with ``tuner`` from ``checkout`` (``seed``: the YAML's unless given); prints one JSON line.

    ``parts``: also the tuner's CPU seconds per trial in each of its parts (the searcher's
    asks and tells, the energy model's fits, the optimiser's snapshots), and each BO step's
    (tier, CPU seconds, completed trials) where the checkout has a step policy.
    """
    sys.path.insert(0, str(checkout))
    import tuner

    spent, steps = (_time_parts() if parts else ({}, []))

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        result = tuner.tune(ROOT / "examples" / "quickstart.yaml", output_dir=Path(tmp) / "quickstart", progress=False,
                            seed=seed)
        wall = time.perf_counter() - start
        state = json.loads((Path(tmp) / "quickstart" / "study.json").read_text())
    extra = state.get("extra", {})
    print(json.dumps({
        "trials": len(result.trials), "wall_s": wall, "total_kwh": result.total_energy_kwh,
        "overhead_kwh": result.overhead_kwh, "share": result.overhead_kwh / result.total_energy_kwh,
        "tuner_cpu_s_per_trial": extra.get("searcher_cpu_s", 0.0) / max(1, len(result.trials)),
        "median_trial_kwh": float(result.completed["energy_kwh"].median()),
        "best_accuracy": float(result.completed["accuracy"].max()),
        "front_size": len(result.pareto_front),
        "hypervolume": quickstart_hypervolume(result.completed["accuracy"], result.completed["energy_kwh"]),
        **({"cpu_s_per_trial": {k: v / max(1, len(result.trials)) for k, v in spent.items()}, "steps": steps}
           if parts else {}),
    }), flush=True)


def _time_parts() -> tuple[dict[str, float], list]:
    """Wrap the tuner's parts to sum their CPU seconds; the BO steps' (tier, CPU s, trials) as they happen."""
    from tuner.search import ax_searcher
    from tuner.study import budget, study

    spent: dict[str, float] = {}
    steps: list = []

    def wrap(owner: type, name: str, label: str) -> None:
        original = getattr(owner, name)

        def timed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0.0) + time.process_time() - start

        setattr(owner, name, timed)

    wrap(ax_searcher.AxSearcher, "ask", "ask")
    wrap(ax_searcher.AxSearcher, "tell", "tell")
    wrap(ax_searcher.AxSearcher, "ask_within", "affordable_draws")
    wrap(budget.BudgetGate, "_predict", "energy_model_predict")
    wrap(budget.BudgetGate, "_refit", "energy_model_fit")
    wrap(study.Study, "save_searcher", "snapshot")
    try:
        from tuner.search import step_policy
    except ImportError:  # a checkout from before the step policy
        return spent, steps
    observe = step_policy.StepPolicy.observe_step

    def observed(policy, tier, cpu_s):  # noqa: ANN001, ANN202
        steps.append((tier.name, round(cpu_s, 3), len(policy.trial_kwh)))
        return observe(policy, tier, cpu_s)

    step_policy.StepPolicy.observe_step = observed
    return spent, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="an older checkout to run alongside this one")
    parser.add_argument("--child", metavar="CHECKOUT",
                        help="only one study, with tuner from CHECKOUT; prints its figures as one JSON line")
    parser.add_argument("--seed", type=int, help="the studies' seed (default: the YAML's, 0)")
    parser.add_argument("--parts", action="store_true", help="with --child: where the tuner's CPU went")
    args = parser.parse_args()
    if args.child:
        child(Path(args.child), args.seed, args.parts)
        return
    env = {**os.environ, "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
           "RAY_AIR_NEW_OUTPUT": "0"}
    env.pop("MLFLOW_TRACKING_URI", None)
    checkouts = {"before": Path(args.before).resolve()} if args.before else {}
    checkouts["after" if args.before else "this"] = ROOT
    procs = {}
    for name, path in checkouts.items():
        if procs:  # two Ray nodes starting at once on a loaded machine time out; the studies still overlap
            time.sleep(STAGGER_S)
        seed = [] if args.seed is None else ["--seed", str(args.seed)]
        procs[name] = subprocess.Popen([sys.executable, __file__, "--child", str(path), *seed], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    rows = {}
    for name, proc in procs.items():
        out, _ = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"the {name} quickstart failed (exit {proc.returncode}); run it alone: "
                             f"{__file__} --child {checkouts[name]}")
        rows[name] = json.loads(out.strip().splitlines()[-1])
    print(f"{'':<24}" + "".join(f"{name:>14}" for name in rows) + ("   after/before" if args.before else ""))
    for key in next(iter(rows.values())):
        values = [rows[name][key] for name in rows]
        ratio = f"{values[-1] / values[0]:>14.2f}x" if args.before and values[0] else ""
        print(f"{key:<24}" + "".join(f"{v:>14.3g}" for v in values) + ratio)
    print("(the tuner's share is overhead_kwh / total_kwh; goal <= 3 %)")


if __name__ == "__main__":
    main()
