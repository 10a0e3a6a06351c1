from __future__ import annotations

import pytest

from tests._support.serving import make_checkpoint


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """A knn checkpoint (hashing encoder) every scale-out server serves."""
    return make_checkpoint(tmp_path_factory.mktemp("scale-server") / "ck")
