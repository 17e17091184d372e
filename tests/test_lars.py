"""medssl's LARS against lightly's, step by step, and without a read back from the device."""
import torch
from lightly.utils.lars import LARS as LightlyLARS

from medssl.host_reads import HostReads
from medssl.pretrain.methods.lars import LARS


def parameters():
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(8, 4)), torch.nn.Parameter(torch.zeros(4)),  # p_norm 0
            torch.nn.Parameter(torch.randn(3)), torch.nn.Parameter(torch.randn(5))]


def run(cls, steps=4, **kwargs):
    params = parameters()
    optimizer = cls([{"params": params[:2]}, {"params": params[2:], "weight_decay": 0.0}],
                    lr=0.1, momentum=0.9, weight_decay=1e-4, **kwargs)
    reads = 0
    for step in range(steps):
        for i, p in enumerate(params):
            g = torch.randn(p.shape, generator=torch.Generator().manual_seed(step * 10 + i))
            p.grad = torch.zeros_like(p) if i == 3 and step == 1 else g  # g_norm 0 once
        with HostReads() as counted:
            optimizer.step()
        reads += counted.count
    return [p.detach() for p in params], reads


def test_the_same_updates_as_lightlys_and_nothing_read_back():
    for nesterov in (False, True):
        ours, reads = run(LARS, nesterov=nesterov)
        theirs, their_reads = run(LightlyLARS, nesterov=nesterov)
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert reads == 0 and their_reads > 0  # lightly's asks about every parameter with decay
