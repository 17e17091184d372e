"""The names of the scores a downstream run records, once: what runs log, what results.csv holds
and what the report shows (no torch needed to read them)."""

METRICS = ("accuracy", "balanced_accuracy", "auc", "f1_macro", "precision")
ALSO_NAMED = {"recall": "balanced_accuracy"}  # macro-averaged recall is balanced accuracy
SCORES = METRICS + tuple(ALSO_NAMED)  # every number a run records, in results.csv's order
