"""Count what makes the host read a value back from the device in a piece of code.

On a GPU each such read makes the CPU wait until the GPU has caught up (``.item()``, ``bool()``
or ``int()`` of a tensor, a boolean-mask index, ``nonzero``, ``masked_select``, ``unique``):
the queue of kernels runs dry and the step slows. CUDA's sync debug mode
(``torch.cuda.set_sync_debug_mode``) sees them on a GPU; this counts the same operations on any
device, the CPU included, at the level of the operators the code calls.

    with HostReads() as reads:
        loss = module.training_step(batch, 0); loss.backward()
    reads.count, reads.ops  # 0, Counter()
"""
from __future__ import annotations

from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
READS = {aten._local_scalar_dense.default, aten.is_nonzero.default, aten.nonzero.default,
         aten.masked_select.default, aten._unique2.default, aten.unique_dim.default,
         aten.unique_consecutive.default}


def _bool_index(func, args) -> bool:
    if func is not aten.index.Tensor:
        return False
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1] if i is not None)


class HostReads(TorchDispatchMode):
    """A context that counts the operators reading a device value back to the host."""

    def __init__(self, ignore=()):
        """``ignore``: tensors whose reads are not counted (optimizers' step counters, which
        torch and timm keep on the host on purpose: ``host_tensors``)."""
        super().__init__()
        self.ops: Counter = Counter()
        self.ignore = {id(t) for t in ignore}

    @property
    def count(self) -> int:
        return sum(self.ops.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if (func in READS or _bool_index(func, args)) and not (args and id(args[0]) in self.ignore):
            self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def host_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The step counters an optimizer keeps on the host (torch's Adam / AdamW unless fused or
    capturable, timm's LAMB): reading them costs no wait on the device."""
    found = [group["step"] for group in optimizer.param_groups if isinstance(group.get("step"), torch.Tensor)]
    found += [state["step"] for state in optimizer.state.values() if isinstance(state.get("step"), torch.Tensor)]
    return [t for t in found if t.device.type == "cpu"]
