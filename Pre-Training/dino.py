"""Pre-train a ResNet with DINO on a slice store.

    python Pre-Training/dino.py fit --config Pre-Training/configs/dino.yaml --data.store STORE
    python Pre-Training/dino.py fit --config Pre-Training/configs/dino_quick.yaml --data.store STORE
    python Pre-Training/dino.py fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes

The same LightningCLI as ``medssl pretrain dino`` (medssl/pretrain/cli.py).
"""
from medssl.pretrain.cli import pretrain_cli

if __name__ == "__main__":
    pretrain_cli("dino")
