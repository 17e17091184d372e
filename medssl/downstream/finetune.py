"""Fine-tuning (and linear probing) of a pre-trained ResNet on a labelled task."""
from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_lightning.callbacks import BaseFinetuning

from ..checkpoints import load_backbone
from ..models.backbone import BACKBONES
from .knn import KNN, TEMPERATURE, K
from .metrics import ClassificationMetrics
from .scores import SCORES

MODES = ("finetune", "linear", "knn")


class FreezeBackbone(BaseFinetuning):
    """Backbone frozen (BatchNorm affine parameters still train) for ``epochs`` epochs, then
    trained with its own, explicit learning rate ``backbone_lr``."""

    def __init__(self, epochs: int, backbone_lr: float):
        super().__init__()
        self.epochs, self.backbone_lr = epochs, backbone_lr

    def freeze_before_training(self, module) -> None:
        if module.hparams.mode != "finetune":  # everything frozen, running statistics too
            for m in module.trunk():
                m.requires_grad_(False)
        else:
            self.freeze(module.trunk(), train_bn=True)

    def finetune_function(self, module, current_epoch, optimizer) -> None:
        if current_epoch == self.epochs and module.hparams.mode == "finetune":
            self.unfreeze_and_add_param_group(module.trunk(), optimizer, lr=self.backbone_lr,
                                              initial_denom_lr=1.0, train_bn=True)


class FineTune(pl.LightningModule):
    """A torchvision ResNet initialised from ``checkpoint`` (any format the loader reads; None
    for random initialisation), with a new linear head.

    mode ``finetune``: the study's protocol (Adam lr 1e-4, weight decay 5e-4, backbone frozen
    for ``freeze_epochs`` with BatchNorm affine training, then trained at ``backbone_lr``);
    ``linear``: the backbone stays frozen, BatchNorm included; ``knn``: no training at all, the
    project's kNN vote (``medssl.downstream.knn``: ``knn_k`` neighbours, ``knn_temperature``)
    on the backbone features of the training images (one pass over them).
    """

    def __init__(self, num_classes: int, checkpoint: str | None = None, arch: str = "resnet50",
                 mode: str = "finetune", lr: float = 1e-4, weight_decay: float = 5e-4,
                 freeze_epochs: int = 10, backbone_lr: float = 1e-4, knn_k: int = K,
                 knn_temperature: float = TEMPERATURE, trust_checkpoint: bool = False):
        super().__init__()
        self.save_hyperparameters()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes is {num_classes}: a task needs at least two classes")
        self.automatic_optimization = mode != "knn"
        self._bank: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._knn: KNN | None = None
        if checkpoint:
            self.model, self.load_report = load_backbone(checkpoint, arch, num_classes,
                                                         trust=trust_checkpoint)
        else:
            self.model = BACKBONES[arch][0](weights=None, num_classes=num_classes)
            self.load_report = None
        self.val_metrics = ClassificationMetrics(num_classes)
        self.test_metrics = ClassificationMetrics(num_classes)
        self.test_results: dict = {}

    def trunk(self) -> list[nn.Module]:
        return [m for name, m in self.model.named_children() if name != "fc"]

    def on_train_epoch_start(self) -> None:
        if self.hparams.mode != "finetune":
            for module in self.trunk():
                module.eval()  # frozen statistics too
        self._bank, self._knn = [], None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised pooled backbone features."""
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(images))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return F.normalize(torch.flatten(m.avgpool(x), 1).float(), dim=1)

    def training_step(self, batch, batch_idx):
        images, labels = batch
        if self.hparams.mode == "knn":
            with torch.no_grad():
                self._bank.append((self.features(images).cpu(), labels.cpu()))
            return None
        loss = F.cross_entropy(self(images), labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def on_train_epoch_end(self) -> None:
        if self.hparams.mode == "knn":
            self.trainer.should_stop = True  # one pass over the training images is the whole "fit"

    def knn_probabilities(self, features: torch.Tensor) -> torch.Tensor:
        """Class probabilities of ``features`` by the kNN vote over the training images'."""
        if self._knn is None:
            h = self.hparams
            self._knn = KNN(torch.cat([f for f, _ in self._bank]), torch.cat([y for _, y in self._bank]),
                            h.num_classes, h.knn_k, h.knn_temperature)
        return self._knn.probabilities(features)

    @property
    def _no_bank_yet(self) -> bool:
        """kNN mode before its pass over the training images (Lightning's sanity check)."""
        return self.hparams.mode == "knn" and not self._bank

    def _evaluate(self, batch, metrics, stage):
        images, labels = batch
        if self.hparams.mode == "knn":
            metrics.update(self.knn_probabilities(self.features(images)), labels)
            return
        logits = self(images)
        metrics.update(logits.softmax(1), labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), batch_size=len(labels))

    def _log_scores(self, metrics, stage) -> dict:
        results = metrics.compute()
        metrics.reset()
        for name in SCORES:
            self.log(f"{stage}/{name}", results[name], prog_bar=name == "accuracy")
        return results

    def validation_step(self, batch, batch_idx):
        if not self._no_bank_yet:
            self._evaluate(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        if not self._no_bank_yet:
            self._log_scores(self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self.test_results = self._log_scores(self.test_metrics, "test")

    def configure_optimizers(self):
        h = self.hparams
        if h.mode == "knn":
            return None
        head = self.model.fc.parameters()
        # The trunk's BatchNorm affine parameters train from the start (frozen backbone);
        # FreezeBackbone adds the rest of the trunk later with its own learning rate.
        params = list(head) + [p for m in self.trunk() for p in m.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay)

    def configure_callbacks(self):
        return [FreezeBackbone(self.hparams.freeze_epochs, self.hparams.backbone_lr)]
