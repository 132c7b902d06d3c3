"""MLflow tracking: a parent run per study, a child run per trial, written by the driver
only, with a queue on disk that keeps every record through a tracking-server outage."""

from tuner.tracking.mlflow import StudyTracker
from tuner.tracking.queue import (
    QUEUE_FILE,
    QueuedTracker,
    close_unbooked_children,
    drop_partial_child,
    flush_output_dir,
    open_tracker,
)

__all__ = ["QUEUE_FILE", "QueuedTracker", "StudyTracker", "close_unbooked_children", "drop_partial_child",
           "flush_output_dir", "open_tracker"]
