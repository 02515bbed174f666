from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.master.fakes import FakeOS, Logs
from tests.worker.helpers import capture_logs


@pytest.fixture
def fake_os(monkeypatch: pytest.MonkeyPatch) -> FakeOS:
    fake = FakeOS()
    monkeypatch.setattr(os, "kill", fake.kill)
    monkeypatch.setattr(os, "waitpid", fake.waitpid)
    return fake


@pytest.fixture
def logs() -> Iterator[Logs]:
    """Records of the "tricorn.error" logger (captured there: it may not propagate)."""
    with capture_logs("tricorn.error") as handler:
        yield handler
