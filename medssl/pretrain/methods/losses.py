"""lightly's SimCLR, VICReg and DINO losses for a step that neither waits on the device nor
recompiles.

lightly drops a matrix's diagonal by boolean indexing (``x[~eye]``): how many elements that
keeps is counted on the device (``nonzero``), so the step waits for it, and ``torch.compile``
breaks the graph there. Here the diagonal is masked in place instead, at a fixed shape. DINO's
teacher temperature is a Python float in lightly, a constant that ``torch.compile`` specialises
on: a warm-up would recompile the step at every step; here it is a tensor. The values are
lightly's (tests/test_lightly_losses.py compares them).
"""
from __future__ import annotations

import torch
import torch.distributed._functional_collectives as funcol
from lightly import loss as lightly_loss
from lightly.loss.vicreg_loss import invariance_loss, variance_loss
from lightly.utils import dist

from ...models.sync_batchnorm import batch_norm, distributed


def diagonal_of_rank(n: int, device: torch.device) -> torch.Tensor:
    """(n, n * world size), True at (i, rank * n + i): each of this process's samples against
    itself among the gathered ones (lightly's ``eye_rank``, made on ``device``)."""
    rows = torch.arange(n, device=device) + dist.rank() * n
    return rows[:, None] == torch.arange(n * dist.world_size(), device=device)[None, :]


class NTXentLoss(lightly_loss.NTXentLoss):
    """lightly's ``NTXentLoss``; with no memory bank (negatives from the batch, SimCLR), each
    view's similarity to itself gets a ``-inf`` logit (no weight in the softmax) rather than
    being cut out of the logits."""

    def forward(self, out0: torch.Tensor, out1: torch.Tensor) -> torch.Tensor:
        if self.memory_bank.size[0] > 0:
            return super().forward(out0, out1)
        n = len(out0)
        out0 = torch.nn.functional.normalize(out0, dim=1)
        out1 = torch.nn.functional.normalize(out1, dim=1)
        gathered = self.gather_distributed and dist.world_size() > 1
        all0 = torch.cat(dist.gather(out0)) if gathered else out0
        all1 = torch.cat(dist.gather(out1)) if gathered else out1
        itself = diagonal_of_rank(n, out0.device) if gathered else torch.eye(n, dtype=torch.bool, device=out0.device)
        t = self.temperature
        logits = torch.cat([
            torch.cat([out0 @ all1.T / t, (out0 @ all0.T / t).masked_fill(itself, float("-inf"))], dim=1),
            torch.cat([out1 @ all0.T / t, (out1 @ all1.T / t).masked_fill(itself, float("-inf"))], dim=1)])
        labels = torch.arange(n, device=out0.device) + (dist.rank() * n if gathered else 0)
        return self.cross_entropy(logits, labels.repeat(2))


def covariance_loss(x: torch.Tensor) -> torch.Tensor:
    """lightly's VICReg covariance term, the off-diagonal squares summed as all minus diagonal."""
    x = x - x.mean(dim=0)
    cov = x.T @ x / (len(x) - 1)
    return (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / x.shape[1]


class VICRegLoss(lightly_loss.VICRegLoss):
    """lightly's ``VICRegLoss`` for (batch, dim) embeddings, its covariance term at a fixed shape."""

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        invariance = invariance_loss(z_a, z_b)
        if self.gather_distributed and dist.world_size() > 1:
            z_a, z_b = torch.cat(dist.gather(z_a)), torch.cat(dist.gather(z_b))
        variance = 0.5 * (variance_loss(z_a, self.eps) + variance_loss(z_b, self.eps))
        covariance = covariance_loss(z_a) + covariance_loss(z_b)
        return self.lambda_param * invariance + self.mu_param * variance + self.nu_param * covariance


class DINOLoss(lightly_loss.DINOLoss):
    """lightly's ``DINOLoss`` with the teacher's temperature given as a tensor at every call."""

    def forward(self, teacher_out: list[torch.Tensor], student_out: list[torch.Tensor],
                teacher_temp: torch.Tensor) -> torch.Tensor:
        teacher = torch.stack(teacher_out)  # (views, batch, dim)
        teacher_p = torch.softmax((teacher - self.center) / teacher_temp, dim=-1)
        student_log_p = torch.log_softmax(torch.stack(student_out) / self.student_temp, dim=-1)
        cross = -torch.einsum("tbd,sbd->ts", teacher_p, student_log_p)
        cross = cross * (1 - torch.eye(*cross.shape, device=cross.device))  # not a view with itself
        terms = cross.numel() - min(cross.shape)
        self.update_center(teacher)
        return cross.sum() / (terms * teacher.shape[1])


class BarlowTwinsLoss(lightly_loss.BarlowTwinsLoss):
    """lightly's ``BarlowTwinsLoss`` with each embedding dimension normalised by the statistics of
    the whole batch over all processes, as the official code does (a synchronised BatchNorm):
    lightly's normalises each process's share on its own, so on several GPUs its loss is not the
    one-GPU loss (the cross-correlation is then summed over the processes, differentiably)."""

    def forward(self, z_a: torch.Tensor, z_b: torch.Tensor) -> torch.Tensor:
        sync = self.gather_distributed and distributed()
        normalise = torch.nn.BatchNorm1d(z_a.shape[1], affine=False, track_running_stats=False).to(z_a.device)
        a, b = batch_norm(z_a, normalise, sync=sync), batch_norm(z_b, normalise, sync=sync)
        c = a.T @ b
        n = torch.full((), len(z_a), dtype=c.dtype, device=c.device)
        if sync:
            c = funcol.all_reduce(c, "sum", torch.distributed.group.WORLD)
            n = n * torch.distributed.get_world_size()
        c = c / n
        diagonal = torch.diagonal(c)
        invariance = (diagonal - 1).pow(2).sum()
        redundancy = c.pow(2).sum() - diagonal.pow(2).sum()
        return invariance + self.lambda_param * redundancy
