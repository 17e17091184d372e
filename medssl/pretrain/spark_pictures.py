"""SparK's reconstruction pictures: a Lightning callback for SparK runs."""
from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from .resume import stopping_for_requeue


class SparkPictures(pl.Callback):
    """Every ``every_n_epochs`` epochs, save a PNG grid for a fixed set of slices: input, masked
    input, reconstruction, and the reconstruction pasted into the masked patches
    (``<log_dir>/reconstructions/epoch_NNNN_step_S.png``). People judge a masked autoencoder
    by eye.

    Args:
        every_n_epochs: save a picture every this many epochs (and at the end of training).
        count: slices shown, spread evenly over the store.
        seed: seed of the masks drawn for the pictures.
    """

    def __init__(self, every_n_epochs: int = 10, count: int = 6, seed: int = 0):
        self.every_n_epochs, self.count, self.seed = every_n_epochs, count, seed
        self.saved: list[Path] = []
        self._last_step = -1

    def _images(self, trainer, module):
        import numpy as np
        import torch
        import torch.nn.functional as F

        data = trainer.datamodule
        view = data.views_config[0]
        size, mean, std = view.get("size", 224), view.get("mean", [0.5])[0], view.get("std", [0.25])[0]
        picks = np.linspace(0, len(data.store) - 1, min(self.count, len(data.store))).round().astype(int)
        images = torch.stack([data.intensity(torch.from_numpy(data.store[int(i)].astype(np.float32))[None])
                              for i in picks])
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        return ((images - mean) / std).expand(-1, 3, -1, -1).to(module.device)

    def on_train_epoch_end(self, trainer, module) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0 and not stopping_for_requeue(trainer):
            self.save(trainer, module)

    def on_train_end(self, trainer, module) -> None:
        # the last picture, whatever the epoch
        if self._last_step != trainer.global_step and not stopping_for_requeue(trainer):
            self.save(trainer, module)

    def save(self, trainer, module) -> None:
        folder = Path(trainer.log_dir or trainer.default_root_dir) / "reconstructions"  # every rank
        self._save(trainer, module, folder)

    @rank_zero_only
    def _save(self, trainer, module, folder: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import torch

        images = self._images(trainer, module)
        generator = torch.Generator(device=images.device).manual_seed(self.seed)
        mask = module.make_mask(images, generator)
        was_training = module.training
        module.eval()
        pictures = module.reconstruct(images, mask)
        module.train(was_training)
        low, high = float(images.min()), float(images.max())
        visible = torch.nn.functional.interpolate(mask.float(), size=images.shape[-2:])
        pictures["masked"] = pictures["masked"] + (1 - visible) * low  # hidden patches shown dark
        columns = ["input", "masked", "reconstruction", "pasted"]
        fig, axes = plt.subplots(len(images), 4, figsize=(8, 2 * len(images)), squeeze=False)
        for row in range(len(images)):
            for col, key in enumerate(columns):
                ax = axes[row, col]
                ax.imshow(pictures[key][row, 0].float().cpu(), cmap="gray", vmin=low, vmax=high)
                ax.axis("off")
                if row == 0:
                    ax.set_title(key, fontsize=9)
        fig.suptitle(f"SparK epoch {trainer.current_epoch + 1}, mask ratio {module.hparams.mask_ratio}",
                     fontsize=10)
        fig.tight_layout()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"epoch_{trainer.current_epoch + 1:04d}_step_{trainer.global_step}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        self.saved.append(path)
        self._last_step = trainer.global_step
