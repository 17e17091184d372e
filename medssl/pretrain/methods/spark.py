"""SparK: BERT-style masked image modelling for CNNs with sparse convolution masking."""
from __future__ import annotations

import torch
from lightly.utils.scheduler import cosine_schedule

from ...models import build_backbone
from ...models.spark_decoder import Densify, LightDecoder
from ...models.sparse import STRIDE, SparseResNet, random_mask
from .base import PretrainMethod, float32
from .optimizer import OptimizerConfig


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, patch*patch*C), patches in row-major grid order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int, grid: int) -> torch.Tensor:
    b = patches.shape[0]
    x = patches.reshape(b, grid, grid, patch, patch, channels).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(b, channels, grid * patch, grid * patch)


class SparK(PretrainMethod):
    """Views: one crop per image (SparK's light augmentation), side a multiple of 32.

    Defaults are the study's: mask ratio 0.6 on the stride-32 grid, decoder width 768,
    drop-path 0.05, LAMB betas (0.9, 0.95), lr 2e-4 x batch / 256 (``optimizer.lr`` is the rate
    for a total batch of 256, scaled to the real total batch), 40 warm-up epochs from 0.5 % of
    the peak, cosine to 0.1 %, weight decay on a cosine from 0.04 (``optimizer.weight_decay``)
    to 0.2 (not on biases, norms and mask tokens); gradient clipping at 5 is the Trainer's
    ``gradient_clip_val`` in the config.

    Args:
        mask_ratio: fraction of the stride-32 patches hidden from the encoder.
        decoder_width: width of the decoder at its deepest scale (halved at each finer one).
        drop_path: stochastic-depth rate of the encoder's residual blocks.
        sync_bn: visible-only BatchNorm statistics summed over all processes.
        final_weight_decay: weight decay at the last step (from ``optimizer.weight_decay``).
        optimizer: optimiser and learning-rate schedule (default ``SparK.OPTIMIZER``).
        **kwargs: ``arch``, ``channels_last``, ``compile`` (see ``PretrainMethod``).
    """

    method_name = "spark"
    OPTIMIZER = OptimizerConfig(name="lamb", lr=2e-4, weight_decay=0.04, momentum=0.9,
                                betas=(0.9, 0.95), warmup_epochs=40, warmup_start_ratio=0.005,
                                final_lr_ratio=0.001)
    TINY = dict(decoder_width=32)
    lr_per_256_images = True

    def __init__(self, mask_ratio: float = 0.6, decoder_width: int = 768, drop_path: float = 0.05,
                 sync_bn: bool = True, final_weight_decay: float = 0.2,
                 optimizer: OptimizerConfig = OPTIMIZER, **kwargs):
        super().__init__(optimizer=optimizer, **kwargs)
        # zero-initialised last BN in every residual block, as the timm ResNet of official SparK
        self.backbone = build_backbone(self.arch, zero_init_residual=True)
        self.encoder = SparseResNet(self.backbone, drop_path=drop_path, sync_bn=sync_bn)
        widths = self.encoder.widths[::-1]  # deepest first
        self.densify = Densify(widths, [decoder_width // 2 ** i for i in range(len(widths))], sync_bn)
        self.decoder = LightDecoder(decoder_width, out_channels=3)

    def forward(self, images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruction (B, 3, H, W) of ``images`` seen through ``mask`` (True = visible)."""
        features = self.encoder(images, mask)[::-1]
        return self.decoder(self.densify(features, mask))

    def make_mask(self, images: torch.Tensor, generator=None) -> torch.Tensor:
        h, w = images.shape[-2:]
        if h % STRIDE or w % STRIDE or h != w:
            raise ValueError(f"SparK needs square inputs with a side divisible by {STRIDE}, got {h}x{w}")
        return random_mask(len(images), h // STRIDE, self.hparams.mask_ratio, images.device, generator)

    @staticmethod
    def patch_targets(images: torch.Tensor):
        """Per-patch normalised pixel targets, with each patch's mean and std."""
        target = patchify(images.float(), STRIDE)
        mean = target.mean(-1, keepdim=True)
        std = (target.var(-1, keepdim=True) + 1e-6).sqrt()
        return (target - mean) / std, mean, std

    def loss(self, images: torch.Tensor, prediction: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MSE to the per-patch normalised target, averaged over MASKED patches only (``random_mask``
        guarantees some; the check lives there, so that the step never waits on the device)."""
        masked = (~mask).flatten(1).float()
        target, _, _ = self.patch_targets(images)
        per_patch = (patchify(prediction.float(), STRIDE) - target).pow(2).mean(-1)
        return (per_patch * masked).sum() / masked.sum()

    def training_loss(self, batch):
        (images,) = self.views_to_device_format(batch[:1])
        mask = self.make_mask(images)
        prediction = self(images, mask)
        with float32():
            return self.loss(images, prediction.float(), mask), {}

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Input, masked input, reconstruction (in image space) and the reconstruction pasted
        into the masked patches of the input."""
        _, mean, std = self.patch_targets(images)
        prediction = patchify(self(images, mask).float(), STRIDE) * std + mean
        grid = images.shape[-1] // STRIDE
        recon = unpatchify(prediction, STRIDE, images.shape[1], grid)
        visible = torch.nn.functional.interpolate(mask.float(), size=images.shape[-2:], mode="nearest")
        return {"input": images, "masked": images * visible, "reconstruction": recon,
                "pasted": images * visible + recon * (1 - visible)}

    # --- optimisation: no decay on biases, norms and mask tokens; decay on a cosine schedule
    def parameter_groups(self):
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or "mask_tokens" in name else decay).append(p)
        return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]

    def weight_decay_at(self, step: int) -> float:
        return cosine_schedule(step, self.total_steps(), self.optimizer_config.weight_decay,
                               self.hparams.final_weight_decay)

    def on_train_batch_start(self, batch, batch_idx) -> None:
        super().on_train_batch_start(batch, batch_idx)
        wd = self.weight_decay_at(self.global_step)
        for optimizer in self.trainer.optimizers:
            optimizer.param_groups[0]["weight_decay"] = wd
