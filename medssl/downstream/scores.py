"""The names of the scores a downstream run records, once: what runs log, what results.csv holds
and what the report shows (no torch needed to read them)."""

METRICS = ("accuracy", "balanced_accuracy", "auc", "f1_macro", "precision")
ALSO_NAMED = {"recall": "balanced_accuracy"}  # macro-averaged recall is balanced accuracy
SCORES = METRICS + tuple(ALSO_NAMED)  # every number a run records, in results.csv's order

# segmentation: mean over the foreground classes of the per-patient scores (higher is better),
# and the 95th-percentile Hausdorff distance in pixels (lower is better, shown beside them)
SEGMENTATION_METRICS = ("dice", "iou")
SEGMENTATION_SCORES = SEGMENTATION_METRICS + ("hd95",)
HEADLINE = {"classification": "accuracy", "segmentation": "dice"}  # what verdicts use by default

REPORTED = METRICS + SEGMENTATION_METRICS  # what a report may compare (higher is better, 0..1)


def family_metrics(segmentation: bool) -> tuple[str, ...]:
    return SEGMENTATION_METRICS if segmentation else METRICS
