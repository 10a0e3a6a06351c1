"""Where the repository and the shared data live, derived from this file (never absolute paths).

CI clones the repository beside ``../shared``; a test that needs a shared log skips only when
that log truly is not there, and says where it looked.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_dataset(name: str) -> Path:
    """Path of ``../shared/data/<name>/data.parquet``; skips the calling test when it is absent."""
    path = SHARED_DATA / name / "data.parquet"
    if not path.is_file():
        pytest.skip(f"shared dataset {name} not found at {path} (CI clones main beside ../shared)")
    return path
