"""Downstream evaluation: task data in the real layouts, subsets, metrics.

``ClassificationMetrics`` (torchmetrics) is imported on first use, so that reading and writing
task data (the phantom task writer, the download command) does not load torch."""
from .formats import FORMATS
from .subsets import DEFAULT_FRACTIONS, nested_subsets
from .tasks import Split, TaskData, TaskError, load_task

__all__ = ["load_task", "FORMATS", "TaskData", "Split", "TaskError", "nested_subsets",
           "DEFAULT_FRACTIONS", "ClassificationMetrics"]


def __getattr__(name: str):
    if name == "ClassificationMetrics":
        from .metrics import ClassificationMetrics
        return ClassificationMetrics
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
