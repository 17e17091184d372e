"""lightly's feature queue without its per-step wait on the device."""
from __future__ import annotations

import torch
from lightly.models.modules.memory_bank import MemoryBankModule
from lightly.models.utils import concat_all_gather
from lightly.utils import dist


class Queue(MemoryBankModule):
    """``MemoryBankModule`` whose write position never leaves the device.

    lightly reads its position back from the device (``int(bank_ptr)``) at every update, which
    stalls the GPU once per step, and slices the bank with it. Here the rows to write are
    computed on the device from ``bank_ptr`` (a fixed-size ``index_copy_``), with lightly's
    rule: fill up to the end of the bank, drop the rest of the batch, start over at 0. No host
    read, and nothing that ``torch.compile`` specialises on (a Python int position would make
    it recompile the step at every step).
    """

    @property
    def position(self) -> int:
        """The next row to write (reads the device: for checks and logs, never in a step)."""
        return int(self.bank_ptr.reshape(-1)[0])

    @torch.no_grad()
    def _dequeue_and_enqueue(self, batch: torch.Tensor) -> None:
        if self.gather_distributed and dist.world_size() > 1:
            batch = concat_all_gather(batch)
        length = self.size[0]
        batch = batch[:length].detach().to(self.bank.dtype)  # a longer batch fills the bank once
        rows = self.bank_ptr + torch.arange(len(batch), device=self.bank.device)
        fits = (rows < length).unsqueeze(1)
        rows = rows % length  # distinct rows; those past the end are rewritten with what they hold
        self.bank.index_copy_(0, rows, torch.where(fits, batch, self.bank[rows]))
        end = self.bank_ptr + len(batch)
        self.bank_ptr.copy_(torch.where(end >= length, torch.zeros_like(end), end))

    def restore(self, bank: torch.Tensor, position: torch.Tensor) -> None:
        self.bank.copy_(bank)
        self.bank_ptr.copy_(position.reshape(self.bank_ptr.shape))
