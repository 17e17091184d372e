"""Fine-tune a (pre-trained) ResNet on a labelled task; test the best validation checkpoint
(modes knn and linear: a classifier fit on the frozen backbone's features, no checkpoint).

    medssl finetune fit --config Downstream/configs/covid.yaml \\
        --data.path data/COVID-CT --model.checkpoint spark
    medssl finetune fit --config Downstream/configs/organsmnist.yaml \\
        --data.path organsmnist_224.npz --model.checkpoint runs/swav_backbone.pt --data.fraction 0.1
    medssl finetune fit --config ... --model.mode linear      # linear probe, frozen features
    medssl finetune fit --config ... --model.mode knn         # kNN vote, frozen features
    medssl finetune fit --config ... --print_config           # every setting

The study's protocol is this command's defaults; medssl sweep runs it once per run.
(python Downstream/finetune.py is the same command.)
"""
from __future__ import annotations


def main(argv=None, prog: str | None = None) -> int:
    from ..downstream.cli import finetune_cli
    from ..exits import stopped_by_signal
    from ..user_errors import one_line_errors

    with one_line_errors(), stopped_by_signal("the fine-tune did not finish: run it again."):
        finetune_cli(argv, prog=prog)  # a wrong path or file: one line naming it, exit status 1
    return 0
