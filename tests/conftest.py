"""Shared fixtures: the core async tests run on asyncio and on trio. In a property campaign
(``tests/examples.py``), the tests that keep hypothesis's default count of examples try that
count times the scale too."""

from __future__ import annotations

import pytest
from hypothesis import settings

from .examples import SCALE, examples

if SCALE > 1:
    settings.register_profile("campaign", max_examples=examples(settings().max_examples))
    settings.load_profile("campaign")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    backend: str = request.param
    return backend
