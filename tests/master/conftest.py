from __future__ import annotations

import logging
import os
from collections.abc import Iterator

import pytest

from tests.master.fakes import FakeOS, Logs


@pytest.fixture
def fake_os(monkeypatch: pytest.MonkeyPatch) -> FakeOS:
    fake = FakeOS()
    monkeypatch.setattr(os, "kill", fake.kill)
    monkeypatch.setattr(os, "waitpid", fake.waitpid)
    return fake


@pytest.fixture
def logs() -> Iterator[Logs]:
    """Records of the "tricorn.error" logger (captured there: it may not propagate)."""
    logger = logging.getLogger("tricorn.error")
    handler = Logs()
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
