from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fake_github import FakeGitHub


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """An empty GitHub stand-in of the test's own; modules that serve pages to several tests override it."""
    with FakeGitHub() as gh:
        yield gh
