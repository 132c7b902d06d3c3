"""Grid carbon intensity: providers, CO2 accounting and carbon-aware scheduling."""

from tuner.carbon.base import IntensityProvider, IntensityReading, IntensitySeries, Signal
from tuner.carbon.csvfile import CsvProvider, read_intensity_csv
from tuner.carbon.fallback import FallbackProvider
from tuner.carbon.series import resample
from tuner.carbon.static import StaticProvider

__all__ = [
    "CsvProvider",
    "FallbackProvider",
    "IntensityProvider",
    "IntensityReading",
    "IntensitySeries",
    "Signal",
    "StaticProvider",
    "read_intensity_csv",
    "resample",
]
