"""Fine-tuning of a pre-trained encoder on a segmentation task, scored per patient with MONAI.

The schedule is the classification protocol's (``medssl.downstream.finetune``): Adam, the
encoder frozen with its BatchNorm affine training for ``freeze_epochs`` epochs, then trained at
``backbone_lr``; the best validation epoch (mean Dice) is tested. The decoder, which starts from
random weights whatever the backbone, trains at ``lr`` 1e-3 on batches of 8 slices (the data
module's default for a segmentation task). The loss is MONAI's Dice +
cross-entropy. Scores are computed per patient on the volume of its slices, then averaged over
patients: Dice and IoU per class (a class neither predicted nor present in a patient scores 1,
one predicted where absent 0) and their mean over the classes other than the background, and
the 95th-percentile Hausdorff distance in pixels (where a patient's prediction and truth both
hold the class).
"""
from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric, HausdorffDistanceMetric, MeanIoU
from pytorch_lightning.trainer.states import TrainerFn

from ..finetune import FreezeBackbone
from ..scores import SEGMENTATION_SCORES
from .model import segmentation_model

EXAMPLES = 4  # test slices kept with their predictions for the report's picture: those showing most classes


def _one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(D, H, W) class numbers as (1, C, D, H, W) one-hot."""
    return F.one_hot(labels.long(), num_classes).permute(3, 0, 1, 2)[None].float()


def patient_scores(predictions: list[torch.Tensor], truths: list[torch.Tensor], num_classes: int) -> dict:
    """Per-patient volumes (D, H, W) of class numbers -> {"dice", "iou", "hd95": mean over the
    foreground classes of the per-patient means; "class_dice": [per foreground class]}."""
    dice = DiceMetric(include_background=False, reduction="none", ignore_empty=False)
    iou = MeanIoU(include_background=False, reduction="none", ignore_empty=False)
    hd95 = HausdorffDistanceMetric(include_background=False, percentile=95, reduction="none")
    with warnings.catch_warnings():  # MONAI warns of every class a patient's prediction lacks
        warnings.simplefilter("ignore")
        for pred, truth in zip(predictions, truths):
            p, t = _one_hot(pred, num_classes), _one_hot(truth, num_classes)
            dice(p, t)
            iou(p, t)
            hd95(p, t)
        per_class = {name: metric.aggregate().float().numpy()
                     for name, metric in (("dice", dice), ("iou", iou), ("hd95", hd95))}
    hd = per_class["hd95"]
    hd = np.where(np.isfinite(hd), hd, np.nan)
    with warnings.catch_warnings():  # a class no patient shows in both: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        class_dice = np.nanmean(per_class["dice"], axis=0)
        out = {"dice": float(np.nanmean(class_dice)), "iou": float(np.nanmean(np.nanmean(per_class["iou"], axis=0))),
               "hd95": float(np.nanmean(np.nanmean(hd, axis=0)))}
    out["class_dice"] = [float(v) for v in class_dice]
    return out


class SegmentationFineTune(pl.LightningModule):
    """A U-Net or FPN whose encoder is initialised from ``checkpoint`` (any format the loader
    reads; None for random initialisation), fine-tuned on a segmentation task.

    Args:
        num_classes: classes of the task, the background included (set from the data).
        checkpoint: the backbone: a file (any format the loader reads), a released name, or
            null for random initialisation.
        arch: torchvision ResNet of the encoder; unset: the checkpoint's, resnet50 for random
            initialisation.
        decoder: unet or fpn (segmentation-models-pytorch).
        mode: finetune (the only protocol of segmentation).
        lr: learning rate of the decoder and head, Adam (1e-3: they start from random weights for
            every backbone; the classification head's 1e-4 left them far from trained in the
            schedule's steps, docs/segmentation.md).
        weight_decay: Adam's weight decay.
        freeze_epochs: epochs with the encoder frozen but its BatchNorm affine training.
        backbone_lr: learning rate of the encoder once unfrozen.
        trust_checkpoint: run a checkpoint file's pickled code (only for files you trust).
    """

    MONITOR = "val/dice"

    def __init__(self, num_classes: int, checkpoint: str | None = None, arch: str | None = None,
                 decoder: Literal["unet", "fpn"] = "unet", mode: str = "finetune", lr: float = 1e-3,
                 weight_decay: float = 5e-4, freeze_epochs: int = 10, backbone_lr: float = 1e-4,
                 trust_checkpoint: bool = False):
        super().__init__()
        self.save_hyperparameters()
        if mode != "finetune":
            raise ValueError(f"mode {mode!r}: a segmentation task is fine-tuned (mode finetune); the frozen-feature "
                             "protocols (knn, linear) classify whole images")
        self.model, self.load_report = segmentation_model(checkpoint, num_classes, arch, decoder, trust_checkpoint)
        self.arch = self.load_report.arch if self.load_report else self.model.encoder.__class__.__name__
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.frozen = False
        self.outputs: dict[str, list] = {"val": [], "test": []}
        self.test_results: dict = {}
        self.examples: dict[str, np.ndarray] = {}
        self.candidates: list[tuple] = []  # (classes shown, image, truth, prediction) per test batch

    def trunk(self) -> list:
        return [self.model.encoder]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def on_fit_start(self) -> None:
        if self.trainer.world_size > 1:  # each process would score the patients of its shard only
            raise ValueError("segmentation scores are computed per patient on one device: run with "
                             f"--trainer.devices 1, not {self.trainer.world_size}")

    def training_step(self, batch, batch_idx):
        images, masks, _ = batch
        loss = self.loss(self(images), masks[:, None])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(images))
        return loss

    def _evaluate(self, batch, stage: str) -> None:
        images, masks, patients = batch
        logits = self(images)
        self.log(f"{stage}/loss", self.loss(logits, masks[:, None]), batch_size=len(images))
        predictions = logits.argmax(1).to(torch.uint8)
        self.outputs[stage].append((patients.cpu(), predictions.cpu(), masks.to(torch.uint8).cpu()))
        if stage == "test":  # the batch's slice that shows the most classes is a candidate
            shown = [len(torch.unique(mask)) for mask in masks.cpu()]
            best = int(np.argmax(shown))
            self.candidates.append((shown[best], images[best, 0].float().cpu().numpy(), masks[best].cpu().numpy(),
                                    predictions[best].cpu().numpy()))

    def _scores(self, stage: str) -> dict:
        patients = torch.cat([p for p, _, _ in self.outputs[stage]])
        predictions = torch.cat([p for _, p, _ in self.outputs[stage]])
        truths = torch.cat([t for _, _, t in self.outputs[stage]])
        self.outputs[stage] = []
        groups = [patients == p for p in patients.unique()]
        results = patient_scores([predictions[g] for g in groups], [truths[g] for g in groups],
                                 self.hparams.num_classes)
        c = self.hparams.num_classes
        confusion = torch.bincount(truths.long().flatten() * c + predictions.long().flatten(), minlength=c * c)
        results["confusion"] = confusion.reshape(c, c).tolist()
        results["n_test"] = len(groups)
        for name in SEGMENTATION_SCORES:
            self.log(f"{stage}/{name}", results[name], prog_bar=name == "dice")
        return results

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def on_validation_epoch_start(self) -> None:
        self.outputs["val"] = []

    def on_validation_epoch_end(self) -> None:
        if self.outputs["val"]:
            self._scores("val")

    def on_test_epoch_start(self) -> None:
        self.outputs["test"], self.examples, self.candidates = [], {}, []

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.test_results = self._scores("test")
        kept = sorted(self.candidates, key=lambda c: -c[0])[:EXAMPLES]  # stable: the earlier batch first on ties
        names = ("image", "truth", "prediction")
        self.examples = {name: np.stack([c[i] for c in kept]) for i, name in enumerate(names, 1)}
        self.candidates = []

    def configure_optimizers(self):
        h = self.hparams
        params = [p for p in self.model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=h.lr, weight_decay=h.weight_decay)

    def configure_callbacks(self):
        if self.trainer.state.fn != TrainerFn.FITTING:
            return []
        return [FreezeBackbone(self.hparams.freeze_epochs, self.hparams.backbone_lr)]
