from __future__ import annotations

import pytest

from tests.utils import HTTP_BACKENDS


@pytest.fixture(params=HTTP_BACKENDS)
def http_backend(request: pytest.FixtureRequest) -> str:
    """Every HTTP test runs over both backends: ``--http httptools`` and ``--http h11``."""
    return str(request.param)
