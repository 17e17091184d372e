"""Pre-train a ResNet with SwAV on a slice store.

    python Pre-Training/swav.py fit --config Pre-Training/configs/swav.yaml --data.store STORE
    python Pre-Training/swav.py fit --config Pre-Training/configs/swav_quick.yaml --data.store STORE
    python Pre-Training/swav.py fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes

The same LightningCLI as ``medssl pretrain swav`` (medssl/pretrain/cli.py).
"""
from medssl.pretrain.cli import pretrain_cli

if __name__ == "__main__":
    pretrain_cli("swav")
