"""greentune: energy-aware hyperparameter tuning.

Search the accuracy-versus-kWh Pareto front of a training objective within an energy
budget, with Ray Tune running the trials and Ax choosing them::

    import tuner
    result = tuner.tune("examples/quickstart.yaml", budget_kwh=0.0005)
    print(result.pareto_front)

Heavy dependencies (Ax, MLflow, torch) are imported only where they are used, because
this package is imported in every trial process.
"""

from tuner._measure import measure
from tuner.config import StudyConfig, load_config
from tuner.energy import EnergyMeter, Measurement
from tuner.errors import (
    ConfigError,
    GreentuneError,
    GreentuneWarning,
    OutputWriteError,
    TrackingUnavailable,
)
from tuner.result import TuneResult
from tuner.study import Study, tune
from tuner.trial import get_checkpoint, report

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "EnergyMeter",
    "GreentuneError",
    "GreentuneWarning",
    "Measurement",
    "OutputWriteError",
    "Study",
    "StudyConfig",
    "TrackingUnavailable",
    "TuneResult",
    "get_checkpoint",
    "load_config",
    "measure",
    "report",
    "tune",
]
