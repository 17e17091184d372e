"""Pre-train a ResNet with SparK (masked image modelling with sparse convolutions).

    python Pre-Training/spark.py fit --config Pre-Training/configs/spark.yaml --data.store STORE
    python Pre-Training/spark.py fit --config Pre-Training/configs/spark_quick.yaml --data.store STORE
    python Pre-Training/spark.py fit --config ... --trainer.default_root_dir runs/NAME  # again: resumes

The same LightningCLI as ``medssl pretrain spark`` (medssl/pretrain/cli.py).
"""
from medssl.pretrain.cli import pretrain_cli

if __name__ == "__main__":
    pretrain_cli("spark")
