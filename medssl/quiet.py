"""Lightning's warnings that a user of the project's commands cannot act on, kept quiet there."""
from __future__ import annotations

import warnings
from contextlib import contextmanager

NOT_ACTIONABLE = (
    "`LightningModule.configure_optimizers` returned `None`",  # the frozen modes have no optimiser
    "The '.*' does not have many workers",  # data.num_workers is the user's choice
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own use of torch's pytree
)


@contextmanager
def quiet_lightning():
    """Inside: the ``NOT_ACTIONABLE`` warnings are not shown (every other warning is)."""
    with warnings.catch_warnings():
        for message in NOT_ACTIONABLE:
            warnings.filterwarnings("ignore", message=message)
        yield
