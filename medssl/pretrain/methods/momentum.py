"""Methods with momentum (EMA) copies of their own modules: BYOL's target, MoCo's key encoder."""
from __future__ import annotations

import copy

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

    def add_momentum_copies(self, *names: str) -> None:
        """A frozen copy ``<name>_momentum`` of each module ``<name>``, updated after each step."""
        for name in names:
            target = copy.deepcopy(getattr(self, name))
            deactivate_requires_grad(target)
            setattr(self, f"{name}_momentum", target)
        self.momentum_pairs = (*self.momentum_pairs, *names)

    def ema_rate(self, step: int) -> float:
        """The momentum rate at optimizer step ``step`` (1 keeps the copies as they are)."""
        raise NotImplementedError

    def after_optimizer_step(self) -> None:
        rate = self.ema_rate(self.global_step)
        for name in self.momentum_pairs:
            update_momentum(getattr(self, name), getattr(self, f"{name}_momentum"), rate)
