"""BatchNorm whose statistics are summed over the processes without the host waiting on the GPU.

torch's ``SyncBatchNorm`` drops the statistics of processes with an empty batch by indexing the
gathered counts with a boolean mask: the host must read that mask's size, once per BatchNorm
layer (about 50 times per ResNet-50 pass), and ``torch.compile`` breaks the graph there. Here
every process adds its sums, sums of squares and count into one all-reduce of a fixed size
(differentiable: the backward sums the statistics' gradients over the processes, as
``SyncBatchNorm``'s does). The state-dict names and values are ``nn.BatchNorm1d/2d``'s.

``trainer.sync_batchnorm: true`` in a pre-training config selects this (``SyncFreeBatchNorm``,
a Lightning ``LayerSync`` plugin); on one process the layers are plain BatchNorm.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol
import torch.nn as nn
from pytorch_lightning.plugins import LayerSync


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def batch_norm(x: torch.Tensor, bn: nn.modules.batchnorm._BatchNorm, mask: torch.Tensor | None = None,
               sync: bool = False) -> torch.Tensor:
    """BatchNorm of ``x`` (N, C, ...) with ``bn``'s parameters and running statistics; with
    ``mask`` (float 0/1, broadcastable to x with one channel) over the positions where it is 1
    only, the output zero elsewhere; with ``sync`` the statistics summed over all processes.
    Computed in float32 (float64 for float64 inputs)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    dims = (0, *range(2, x.dim()))
    shape = (1, -1) + (1,) * (x.dim() - 2)
    if bn.training or not bn.track_running_stats:
        xf = x.to(dtype)
        weighted = xf if mask is None else xf * mask
        stats = torch.stack([weighted.sum(dims), (weighted * xf).sum(dims)])  # (2, C)
        if mask is None:
            count = torch.full((1,), x.numel() // x.shape[1], dtype=dtype, device=x.device)
        else:  # (N, 1, ...) at x's size: its sum counts each channel's positions
            count = mask.to(dtype).sum().reshape(1)
        if sync and distributed():
            # the functional all-reduce: autograd sees it (an in-place dist.all_reduce it does
            # not), and torch.compile traces it without a break
            packed = funcol.all_reduce(torch.cat([stats.flatten(), count]), "sum", dist.group.WORLD)
            stats, count = packed[:-1].view(2, -1), packed[-1:]
        n = count.clamp_min(1.0)
        mean = stats[0] / n
        var = (stats[1] / n - mean * mean).clamp_min(0.0)
        if bn.training and bn.track_running_stats:
            with torch.no_grad():
                momentum = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked + 1)
                unbiased = var * n / (n - 1).clamp_min(1.0)
                bn.running_mean.mul_(1 - momentum).add_(mean.to(bn.running_mean.dtype), alpha=momentum)
                bn.running_var.mul_(1 - momentum).add_(unbiased.to(bn.running_var.dtype), alpha=momentum)
                bn.num_batches_tracked += 1
    else:
        mean, var = bn.running_mean.to(dtype), bn.running_var.to(dtype)
    scale = torch.rsqrt(var + bn.eps)
    shift = -mean * scale
    if bn.affine:
        scale = scale * bn.weight.to(dtype)
        shift = shift * bn.weight.to(dtype) + bn.bias.to(dtype)
    out = x.to(dtype) * scale.view(shape) + shift.view(shape)
    return (out if mask is None else out * mask).to(x.dtype)


class SyncFreeBatchNorm1d(nn.BatchNorm1d):
    """``nn.BatchNorm1d`` whose training statistics are summed over the processes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_norm(x, self, sync=True) if self.training and distributed() else super().forward(x)


class SyncFreeBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` whose training statistics are summed over the processes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return batch_norm(x, self, sync=True) if self.training and distributed() else super().forward(x)


SYNCED = {nn.BatchNorm1d: SyncFreeBatchNorm1d, nn.BatchNorm2d: SyncFreeBatchNorm2d}
PLAIN = {synced: plain for plain, synced in SYNCED.items()}


def _swap(module: nn.Module, classes: dict) -> nn.Module:
    """``module`` with every layer of a type in ``classes`` replaced by the mapped type, sharing
    its parameters and buffers."""
    new = classes.get(type(module))
    if new is not None:
        swapped = new.__new__(new)
        swapped.__dict__ = module.__dict__  # the same parameters, buffers, hooks and settings
        module = swapped
    for name, child in module.named_children():
        setattr(module, name, _swap(child, classes))
    return module


def convert(module: nn.Module) -> nn.Module:
    """Every ``nn.BatchNorm1d/2d`` of ``module`` synchronised over the processes."""
    return _swap(module, SYNCED)


def revert(module: nn.Module) -> nn.Module:
    return _swap(module, PLAIN)


class SyncFreeBatchNorm(LayerSync):
    """Lightning's layer-sync plugin for ``SyncFreeBatchNorm1d/2d``."""

    def apply(self, model: nn.Module) -> nn.Module:
        return convert(model)

    def revert(self, model: nn.Module) -> nn.Module:
        return revert(model)
