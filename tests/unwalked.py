"""A table that fails a test if it is walked: for figures that must be kept, not counted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Unwalked(dict[K, V]):
    """A dict that raises ``AssertionError`` when walked while ``armed``; ``what`` names it in
    the failure. Look-ups, insertions and removals stay allowed."""

    armed = False

    def __init__(self, what: str, items: dict[K, V]) -> None:
        super().__init__(items)
        self.what = what

    def _walked(self) -> None:
        if self.armed:
            raise AssertionError(f"{self.what} were walked")

    def values(self) -> Any:
        self._walked()
        return super().values()

    def items(self) -> Any:
        self._walked()
        return super().items()

    def __iter__(self) -> Iterator[K]:
        self._walked()
        return super().__iter__()
