"""Fixtures of the launcher tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.haproxy import short_run_dir


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A fresh directory with a short path (HAProxy's admin socket lives there), removed after."""
    path = short_run_dir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
