"""Methods with momentum (EMA) copies of their own modules: BYOL's target, MoCo's key encoder."""
from __future__ import annotations

import copy

import torch
from lightly.models.utils import deactivate_requires_grad, update_momentum

from .base import PretrainMethod


class MomentumMethod(PretrainMethod):
    """A method whose modules ``<name>`` have frozen copies ``<name>_momentum`` that follow them
    once per optimizer step: ``target = rate * target + (1 - rate) * online``.

    Declare the pairs in the constructor with ``self.add_momentum_copies("backbone", ...)`` and
    give the rate at a step with ``ema_rate``. The copies keep the ``<name>_momentum`` names in
    the state dict (checkpoints and resumed runs rely on them).
    """

    momentum_pairs: tuple[str, ...] = ()

    def add_momentum_copies(self, *names: str, **built: torch.nn.Module) -> None:
        """A frozen copy ``<name>_momentum`` of each module ``<name>``, updated after each step:
        a deep copy, or for ``<name>=module`` that module given ``<name>``'s weights (for modules
        deepcopy refuses, as DINO's head with its weight-normalised layer)."""
        for name in (*names, *built):
            online = getattr(self, name)
            target = built[name] if name in built else copy.deepcopy(online)
            target.load_state_dict(online.state_dict())
            deactivate_requires_grad(target)
            setattr(self, f"{name}_momentum", target)
        self.momentum_pairs = (*self.momentum_pairs, *names, *built)

    def ema_rate(self, step: int) -> float:
        """The momentum rate at optimizer step ``step`` (1 keeps the copies as they are)."""
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        rate = self.ema_rate(self.global_step)
        for name in self.momentum_pairs:
            update_momentum(getattr(self, name), getattr(self, f"{name}_momentum"), rate)
