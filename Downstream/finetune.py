"""Fine-tune a (pre-trained) ResNet on a labelled task: ``medssl finetune``.

    python Downstream/finetune.py fit --config Downstream/configs/covid.yaml \\
        --data.path data/COVID-CT --model.checkpoint spark
    python Downstream/finetune.py fit --config ... --print_config           # every setting

The same LightningCLI as ``medssl finetune`` (medssl/commands/finetune.py, medssl/downstream/cli.py).
"""
import sys

from medssl.commands.finetune import main

if __name__ == "__main__":
    sys.exit(main())
