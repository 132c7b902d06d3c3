"""The quickstart study through the Python API (same study as quickstart.yaml)."""

import tuner
from objectives.tabular_mlp import SEARCH_SPACE, tabular_mlp

if __name__ == "__main__":
    result = tuner.tune(
        {
            "name": "quickstart-api",
            "objective": tabular_mlp,
            "search_space": {**SEARCH_SPACE, "threads": 1},
            "seed": 0,
            "initial_trials": 6,
            "max_concurrent_trials": 2,
        },
        budget_kwh=0.0008,
    )
    print(result.front_table())
    knee = result.knee()
    if knee is not None:
        print(f"\nknee: accuracy {knee['accuracy']:.3f} for {knee['energy_kwh']:.2e} kWh")
    print(result.summary())
    print(f"MLflow: mlflow ui --backend-store-uri {result.tracking_uri}")
