"""lightly's feature queue without its per-step wait on the device."""
from __future__ import annotations

import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import concat_all_gather
from lightly.utils import dist


class Queue(MemoryBankModule):
    """``MemoryBankModule`` whose write position is also kept on the host.

    lightly reads its position back from the device (``int(bank_ptr)``) at every update, which
    stalls the GPU once per step; here it is a Python int, mirrored into ``bank_ptr`` (a device
    write, not a read) so that checkpoints still carry it.
    """

    def __init__(self, size: tuple[int, int], gather_distributed: bool = False):
        super().__init__(size=size, gather_distributed=gather_distributed)
        self.position = 0

    @torch.no_grad()
    def _dequeue_and_enqueue(self, batch: torch.Tensor) -> None:
        if self.gather_distributed and dist.world_size() > 1:
            batch = concat_all_gather(batch)
        length, start = self.size[0], self.position
        end = start + batch.shape[0]
        if end >= length:  # as lightly: fill to the end, then start over
            self.bank[start:] = batch[: length - start].detach()
            end = 0
        else:
            self.bank[start:end] = batch.detach()
        self.position = end
        self.bank_ptr.fill_(end)

    def restore(self, bank: torch.Tensor, position: torch.Tensor) -> None:
        self.bank.copy_(bank)
        self.bank_ptr.copy_(position)
        self.position = int(position.reshape(-1)[0])
