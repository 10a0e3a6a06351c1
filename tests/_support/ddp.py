"""A Lightning callback that makes one DDP rank fail, for the rank-death tests.

It lives in an importable module (not in a test file) because ``ddp_spawn`` pickles callbacks
into freshly spawned processes, which import it by name.
"""

from __future__ import annotations

import pytorch_lightning as pl


class FailOnRank(pl.Callback):
    """Raise in ``rank``'s first training epoch; every other rank trains normally."""

    def __init__(self, rank: int = 1):
        self.rank = rank

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.global_rank == self.rank:
            raise RuntimeError(f"injected failure on rank {self.rank}")
