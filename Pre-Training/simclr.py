"""Pre-train a ResNet with SimCLR on a slice store.

    python Pre-Training/simclr.py fit --config Pre-Training/configs/simclr.yaml --data.store STORE
    python Pre-Training/simclr.py fit --config Pre-Training/configs/simclr_quick.yaml --data.store STORE
    python Pre-Training/simclr.py fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes

The same LightningCLI as ``medssl pretrain simclr`` (medssl/pretrain/cli.py).
"""
from medssl.pretrain.cli import pretrain_cli

if __name__ == "__main__":
    pretrain_cli("simclr")
