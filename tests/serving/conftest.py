"""Fixtures of the serving tests: one fake OpenAI backend per module (tests._support.fake_backend)."""

from __future__ import annotations

import pytest

from tests._support.fake_backend import FakeBackend


@pytest.fixture(scope="module")
def backend():
    fake = FakeBackend("fake")
    yield fake
    fake.stop()
