"""Kernel tests share one compilation cache per session, in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def kernel_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ``PLIANT_CACHE_DIR`` at a fresh directory for the whole session (subprocesses inherit it)."""
    path = tmp_path_factory.mktemp("pliant-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PLIANT_CACHE_DIR", str(path))
        yield path
