"""Pre-train a ResNet with Barlow Twins on a slice store.

    python Pre-Training/barlowtwins.py fit --config Pre-Training/configs/barlowtwins.yaml --data.store STORE
    python Pre-Training/barlowtwins.py fit --config Pre-Training/configs/barlowtwins_quick.yaml --data.store STORE
    python Pre-Training/barlowtwins.py fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes

The same LightningCLI as ``medssl pretrain barlowtwins`` (medssl/pretrain/cli.py).
"""
from medssl.pretrain.cli import pretrain_cli

if __name__ == "__main__":
    pretrain_cli("barlowtwins")
