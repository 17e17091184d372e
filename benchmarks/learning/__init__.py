"""The learning benchmark (``python -m benchmarks.learning``; what it measures: ``__main__``),
one module per job, the views ablation and the learning curves using them too:

- ``pretraining``: the phantom data and one pre-training run per method, resumed or re-used;
- ``probes``: a backbone's frozen features scored by the kNN vote and the linear probe;
- ``finetuning``: the study's protocol, the whole network fine-tuned, run by run;
- ``scoring``: every backbone and random init at its input, scored by both;
- ``cache``: the scores kept in the work folder, re-used by a run with the same settings;
- ``comparison``: paired differences to random init and each method's goal;
- ``report`` and ``figures``: the Markdown report and its pictures;
- ``options``: the command line's scoring options.

Here: what they share.
"""
from __future__ import annotations

from benchmarks.common import ROOT

RANDOM = "random"  # the name of random init's entries
TASKS = {"organ": ("medmnist", "organsmnist_phantom.npz"), "covid": ("covid", "covid"),
         "brain": ("brain", "brain")}  # name: (task format, path under the phantom tasks)
# the segmentation task: fine-tuned only (frozen features classify whole images), on a count of
# training patients, scored by Dice; outside the goal, which is the study's classification protocol
SEGMENTATION = "segmentation"
SEGMENTATION_TASK = ("masks", "segmentation")  # (task format, path under the phantom tasks)
SEGMENTATION_PATIENTS = (2, 5)
PROBES = ("knn", "linear")  # frozen features
FINETUNE = "finetune"  # the study's protocol: the whole network trained
PROTOCOLS = (FINETUNE, *PROBES)
GOAL_LABELS, GOAL_PROTOCOL = (5, 10), FINETUNE
ALL = 0  # "every training image" in --labels
# the fine-tune schedule of the benchmark and the demo (trainer.max_epochs, model.freeze_epochs)
QUICK_SCHEDULE = ROOT / "Downstream" / "configs" / "finetune_quick.yaml"


def label(n: int) -> str:
    """Labels per class as the reports write them."""
    return "all" if n == ALL else str(n)
