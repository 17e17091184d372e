"""Pre-train a ResNet with MoCoV2 on a slice store.

    python Pre-Training/mocov2.py fit --config Pre-Training/configs/mocov2.yaml --data.store STORE
    python Pre-Training/mocov2.py fit --config Pre-Training/configs/mocov2_quick.yaml --data.store STORE
    python Pre-Training/mocov2.py fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes

The same LightningCLI as ``medssl pretrain mocov2`` (medssl/pretrain/cli.py).
"""
from medssl.pretrain.cli import pretrain_cli

if __name__ == "__main__":
    pretrain_cli("mocov2")
