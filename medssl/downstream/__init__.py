"""Downstream evaluation: task data in the real layouts, subsets, metrics."""
from .formats import FORMATS
from .metrics import ClassificationMetrics
from .subsets import DEFAULT_FRACTIONS, nested_subsets
from .tasks import Split, TaskData, TaskError, load_task

__all__ = ["load_task", "FORMATS", "TaskData", "Split", "TaskError", "nested_subsets",
           "DEFAULT_FRACTIONS", "ClassificationMetrics"]
