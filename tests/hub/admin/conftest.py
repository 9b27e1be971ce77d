from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hub.admin.browser import chromium_page


@pytest.fixture
def page() -> Iterator[object]:
    """A page in Debian's Chromium (tests using it are marked `peers` by the root conftest)."""
    with chromium_page() as opened:
        yield opened
