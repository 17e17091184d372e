"""Pre-train a ResNet with VICReg on a slice store.

    python Pre-Training/vicreg.py fit --config Pre-Training/configs/vicreg.yaml --data.store STORE
    python Pre-Training/vicreg.py fit --config Pre-Training/configs/vicreg_quick.yaml --data.store STORE
    python Pre-Training/vicreg.py fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes

The same LightningCLI as ``medssl pretrain vicreg`` (medssl/pretrain/cli.py).
"""
from medssl.pretrain.cli import pretrain_cli

if __name__ == "__main__":
    pretrain_cli("vicreg")
