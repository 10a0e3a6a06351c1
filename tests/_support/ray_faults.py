"""Ray actors that fail on purpose, for the retry and clean-failure tests of ``--engine ray``.

In a module (not a test file) so the tests can ship it to Ray workers by value
(``ray.cloudpickle.register_pickle_by_value``).
"""

from __future__ import annotations

import os
from pathlib import Path

from routecast.router.ray_embed import EmbedActor


class CrashOnceEmbedActor(EmbedActor):
    """Kills its own worker process on the first batch it ever sees (across restarts: a marker file
    says it already happened); Ray restarts the actor and retries the batch."""

    def __init__(self, encoder: str, batch_size: int = 256, marker: str = ""):
        super().__init__(encoder, batch_size)
        self.marker_path = Path(marker)

    def __call__(self, batch):
        try:
            fd = os.open(self.marker_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().__call__(batch)
        os.close(fd)
        os._exit(1)  # a worker dying mid-task, as an OOM kill or a lost node would


class AlwaysFailEmbedActor(EmbedActor):
    """Raises on every batch: the run must fail and leave no output folder behind."""

    def __call__(self, batch):
        raise ValueError("injected failure in every batch")
