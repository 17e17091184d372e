"""Pre-train a ResNet with BYOL on a slice store.

    python Pre-Training/byol.py fit --config Pre-Training/configs/byol.yaml --data.store STORE
    python Pre-Training/byol.py fit --config Pre-Training/configs/byol_quick.yaml --data.store STORE
    python Pre-Training/byol.py fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes

The same LightningCLI as ``medssl pretrain byol`` (medssl/pretrain/cli.py).
"""
from medssl.pretrain.cli import pretrain_cli

if __name__ == "__main__":
    pretrain_cli("byol")
