"""The optimiser settings every pre-training method shares: one ``optimizer:`` group in a config."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from lightly.utils.scheduler import cosine_warmup_schedule

from .lars import LARS

OPTIMIZERS = ("sgd", "lars", "adam", "adamw", "lamb")


@dataclass(frozen=True)
class OptimizerConfig:
    """The optimiser and its learning-rate schedule (``model.optimizer`` in a config).

    The learning rate follows a linear warm-up over ``warmup_epochs`` from
    ``warmup_start_ratio * lr``, then a cosine to ``final_lr_ratio * lr``, updated every
    optimizer step. Each method has its own defaults (its class's ``OPTIMIZER``); a config
    names only the fields it changes.

    Args:
        name: ``sgd``, ``lars`` (lightly), ``adam``, ``adamw`` or ``lamb`` (timm).
        lr: peak learning rate (SparK: for a total batch of 256, scaled to the real one).
        weight_decay: weight decay (SparK: its value at the first step).
        momentum: momentum of SGD and LARS.
        betas: Adam, AdamW and LAMB's betas.
        warmup_epochs: length of the linear warm-up, in epochs (fractions allowed); 0: none.
        warmup_start_ratio: learning rate at the first step, as a fraction of ``lr``.
        final_lr_ratio: learning rate at the last step, as a fraction of ``lr``.
    """

    name: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 1e-4
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_epochs: float = 0.0
    warmup_start_ratio: float = 0.0
    final_lr_ratio: float = 0.0

    def __post_init__(self):
        if self.name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.name!r}")
        object.__setattr__(self, "betas", tuple(self.betas))

    @classmethod
    def of(cls, value: "OptimizerConfig | dict") -> "OptimizerConfig":
        """The settings themselves, or from their dict (as a checkpoint's hyper-parameters hold them)."""
        return value if isinstance(value, cls) else cls(**value)

    def replace(self, **changes) -> "OptimizerConfig":
        """A copy with some fields changed, e.g. ``SparK.OPTIMIZER.replace(warmup_epochs=0)``."""
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return {**asdict(self), "betas": list(self.betas)}

    def lr_factor(self, step: int, total_steps: int, warmup_steps: int) -> float:
        """The learning rate at ``step``, as a fraction of the peak (a warm-up longer than the
        run is cut to the run)."""
        total_steps = max(total_steps, step + 1, 1)
        return cosine_warmup_schedule(step, total_steps, 1.0, self.final_lr_ratio,
                                      min(warmup_steps, total_steps), self.warmup_start_ratio)

    def build(self, params, lr: float, fused: bool = False) -> torch.optim.Optimizer:
        """torch's fused kernels for SGD / Adam / AdamW when ``fused`` (CUDA); LARS (lightly's, sync-free)
        and LAMB (timm) have no fused version."""
        extra = {"fused": True} if fused else {}
        if self.name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay, **extra)
        if self.name == "lars":
            return LARS(params, lr=lr, momentum=self.momentum, weight_decay=self.weight_decay)
        if self.name == "adam":
            return torch.optim.Adam(params, lr=lr, betas=self.betas, weight_decay=self.weight_decay, **extra)
        if self.name == "adamw":
            return torch.optim.AdamW(params, lr=lr, betas=self.betas, weight_decay=self.weight_decay, **extra)
        from timm.optim import Lamb

        return Lamb(params, lr=lr, betas=self.betas, weight_decay=self.weight_decay)
