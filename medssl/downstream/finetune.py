"""Fine-tuning of a pre-trained ResNet on a labelled task, and the two frozen-feature protocols
(kNN vote, linear probe) on the same backbone."""
from __future__ import annotations

from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from pytorch_lightning.callbacks import BaseFinetuning
from pytorch_lightning.trainer.states import TrainerFn

from ..checkpoints import load_backbone
from ..models.backbone import BACKBONES
from .knn import KNN, TEMPERATURE, K
from .linear_probe import LinearProbe
from .metrics import ClassificationMetrics
from .scores import SCORES

MODES = ("finetune", "linear", "knn")
FROZEN_MODES = ("linear", "knn")  # a classifier fit on the frozen backbone's features, no optimiser
DEFAULT_ARCH = "resnet50"  # the backbone of a random-init run when none is given


class FreezeBackbone(BaseFinetuning):
    """Backbone frozen (BatchNorm affine parameters still train) for ``epochs`` epochs, then
    trained with its own, explicit learning rate ``backbone_lr``."""

    def __init__(self, epochs: int, backbone_lr: float):
        super().__init__()
        self.epochs, self.backbone_lr = epochs, backbone_lr

    def freeze_before_training(self, module) -> None:
        self.freeze(module.trunk(), train_bn=True)

    def finetune_function(self, module, current_epoch, optimizer) -> None:
        if current_epoch != self.epochs:
            return
        self.make_trainable(module.trunk())
        # the BatchNorm affine parameters have trained in the optimiser's first group all along
        in_optimizer = {id(p) for group in optimizer.param_groups for p in group["params"]}
        added = [p for p in self.filter_params(module.trunk()) if id(p) not in in_optimizer]
        optimizer.add_param_group({"params": added, "lr": self.backbone_lr})


def _cat(batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.cat([f for f, _ in batches]), torch.cat([y for _, y in batches])


class FineTune(pl.LightningModule):
    """A torchvision ResNet initialised from ``checkpoint`` (any format the loader reads; None
    for random initialisation), evaluated on a labelled task by one of three protocols (``mode``):

    - ``finetune`` (the default, and the study's protocol): a new linear head, Adam lr 1e-4,
      weight decay 5e-4; the backbone frozen for ``freeze_epochs`` epochs with its BatchNorm
      affine parameters training, then trained at ``backbone_lr``; the best validation epoch is
      tested.
    - ``knn`` (frozen features): the project's kNN vote (``medssl.downstream.knn``: ``knn_k``
      neighbours, ``knn_temperature``) over the training images' backbone features.
    - ``linear`` (frozen features): the linear probe (``medssl.downstream.linear_probe``): a
      logistic regression on the standardised features, its ``C`` chosen by validation accuracy.

    Args:
        num_classes: classes of the task (set from the data; no need to give it).
        checkpoint: the backbone: a file (any format the loader reads), a released name, or
            null for random initialisation.
        arch: torchvision ResNet; unset: the checkpoint's (its architecture is in the file),
            resnet50 for random initialisation. One the checkpoint does not hold is an error.
        mode: finetune (the study's protocol), linear (a probe on frozen features) or knn.
        lr: learning rate of the new head (finetune), Adam.
        weight_decay: Adam's weight decay (finetune).
        freeze_epochs: epochs with the backbone frozen but its BatchNorm affine training (finetune).
        backbone_lr: learning rate of the backbone once unfrozen (finetune).
        knn_k: neighbours of the kNN vote (knn).
        knn_temperature: temperature of the kNN vote's weights (knn).
        trust_checkpoint: run a checkpoint file's pickled code (only for files you trust).

    In the frozen modes nothing trains: one epoch, in eval mode, collects the features of the
    training images (``features``); validation collects its own, fits the classifier (the
    probe's ``C`` is chosen there) and logs its scores; testing uses that classifier, in memory.
    """

    def __init__(self, num_classes: int, checkpoint: str | None = None, arch: str | None = None,
                 mode: Literal["finetune", "linear", "knn"] = "finetune", lr: float = 1e-4, weight_decay: float = 5e-4,
                 freeze_epochs: int = 10, backbone_lr: float = 1e-4, knn_k: int = K,
                 knn_temperature: float = TEMPERATURE, trust_checkpoint: bool = False):
        super().__init__()
        self.save_hyperparameters()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes is {num_classes}: a task needs at least two classes")
        if checkpoint:
            self.model, self.load_report = load_backbone(checkpoint, arch, num_classes,
                                                         trust=trust_checkpoint)
        else:
            self.model = BACKBONES[arch or DEFAULT_ARCH][0](weights=None, num_classes=num_classes)
            self.load_report = None
        self.arch = self.load_report.arch if self.load_report else (arch or DEFAULT_ARCH)
        self.frozen = mode in FROZEN_MODES
        if self.frozen:
            self.automatic_optimization = False
            self.model.requires_grad_(False)
        self.train_features: list[tuple[torch.Tensor, torch.Tensor]] = []  # frozen modes, per batch
        self.val_features: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.classifier: KNN | LinearProbe | None = None
        self.val_metrics = ClassificationMetrics(num_classes)
        self.test_metrics = ClassificationMetrics(num_classes)
        self.test_results: dict = {}

    def trunk(self) -> list[nn.Module]:
        return [m for name, m in self.model.named_children() if name != "fc"]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised pooled backbone features."""
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(images))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return F.normalize(torch.flatten(m.avgpool(x), 1).float(), dim=1)

    def _collect(self, batch, into: list) -> None:
        images, labels = batch
        with torch.no_grad():
            into.append((self.features(images).cpu(), labels.cpu()))

    # training: fine-tuning, or the frozen modes' one pass over the training images

    def on_fit_start(self) -> None:
        if self.frozen and self.trainer.world_size > 1:  # each process would see a shard only
            raise ValueError(f"mode {self.hparams.mode!r} collects the features on one device: "
                             f"run it with --trainer.devices 1, not {self.trainer.world_size}")

    def on_train_epoch_start(self) -> None:
        if self.frozen:
            self.model.eval()  # frozen running statistics too
            self.train_features, self.classifier = [], None

    def training_step(self, batch, batch_idx):
        if self.frozen:
            self._collect(batch, self.train_features)
            return None
        images, labels = batch
        loss = F.cross_entropy(self(images), labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def on_train_epoch_end(self) -> None:
        if self.frozen:
            self.trainer.should_stop = True  # one pass over the training images is the whole "fit"

    def fit_classifier(self) -> KNN | LinearProbe:
        """The frozen modes' classifier of the collected training features (the probe's ``C``
        chosen on the validation features collected, if any)."""
        if not self.train_features:
            raise RuntimeError(f"mode {self.hparams.mode!r}: no training features; Trainer.fit collects "
                               "them (one pass over the training images) before validation or testing")
        h = self.hparams
        bank, labels = _cat(self.train_features)
        if h.mode == "knn":
            return KNN(bank, labels, h.num_classes, h.knn_k, h.knn_temperature)
        return LinearProbe(bank, labels, h.num_classes, val=_cat(self.val_features) if self.val_features else None)

    # evaluation

    def _evaluate(self, batch, metrics, stage) -> None:
        images, labels = batch
        logits = self(images)
        metrics.update(logits.softmax(1), labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), batch_size=len(labels))

    def _log_scores(self, metrics, stage) -> dict:
        results = metrics.compute()
        metrics.reset()
        for name in SCORES:
            self.log(f"{stage}/{name}", results[name], prog_bar=name == "accuracy")
        return results

    def on_validation_epoch_start(self) -> None:
        self.val_features = []

    def validation_step(self, batch, batch_idx):
        if not self.frozen:
            self._evaluate(batch, self.val_metrics, "val")
        elif self.train_features:  # not in the sanity check, before the pass over the training images
            self._collect(batch, self.val_features)

    def on_validation_epoch_end(self) -> None:
        if self.frozen and self.val_features:
            self.classifier = self.fit_classifier()
            features, labels = _cat(self.val_features)
            self.val_metrics.update(self.classifier.probabilities(features).to(self.device),
                                    labels.to(self.device))
            if isinstance(self.classifier, LinearProbe):
                self.log("val/probe_c", self.classifier.c)
        if not self.frozen or self.val_features:
            self._log_scores(self.val_metrics, "val")

    def test_step(self, batch, batch_idx):
        if not self.frozen:
            return self._evaluate(batch, self.test_metrics, "test")
        if self.classifier is None:  # fit without validation: the probe's C stays 1
            self.classifier = self.fit_classifier()
        images, labels = batch
        self.test_metrics.update(self.classifier.probabilities(self.features(images)), labels)

    def on_test_epoch_end(self) -> None:
        self.test_results = self._log_scores(self.test_metrics, "test")

    def configure_optimizers(self):
        if self.frozen:
            return None
        h = self.hparams
        # The trunk's BatchNorm affine parameters train from the start (frozen backbone);
        # FreezeBackbone adds the rest of the trunk later with its own learning rate.
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay)

    def configure_callbacks(self):
        fitting = self.trainer.state.fn == TrainerFn.FITTING  # testing keeps the trainer's callbacks
        if self.frozen or not fitting:
            return []
        return [FreezeBackbone(self.hparams.freeze_epochs, self.hparams.backbone_lr)]
