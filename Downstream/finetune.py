"""Fine-tune a (pre-trained) ResNet on a labelled task; test the best validation checkpoint
(modes knn and linear: a classifier fit on the frozen backbone's features, no checkpoint).

    python Downstream/finetune.py fit --config Downstream/configs/covid.yaml \\
        --data.path data/COVID-CT --model.checkpoint spark
    python Downstream/finetune.py fit --config Downstream/configs/organsmnist.yaml \\
        --data.path organsmnist_224.npz --model.checkpoint runs/swav_backbone.pt --data.fraction 0.1
    python Downstream/finetune.py fit --config ... --model.mode linear      # linear probe, frozen features
    python Downstream/finetune.py fit --config ... --model.mode knn         # kNN vote, frozen features
    python Downstream/finetune.py fit --config ... --print_config           # every setting

The study's protocol is this command's defaults; Downstream/sweep.py runs it once per run.
"""
from medssl.downstream.cli import finetune_cli

if __name__ == "__main__":
    finetune_cli()
