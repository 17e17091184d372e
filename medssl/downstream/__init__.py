"""Downstream evaluation: task data in the real layouts, subsets, metrics."""
from .metrics import ClassificationMetrics
from .subsets import DEFAULT_FRACTIONS, nested_subsets
from .tasks import LOADERS, Split, TaskData, TaskError, load_task

__all__ = ["load_task", "LOADERS", "TaskData", "Split", "TaskError", "nested_subsets",
           "DEFAULT_FRACTIONS", "ClassificationMetrics"]
