"""Each package's public surface is explicit, sorted and complete."""

from __future__ import annotations

import importlib
import inspect

import pytest

PACKAGES = ["journals", "runtime"]


def _isort_key(name: str) -> tuple[int, str]:
    # The order ruff (RUF022) keeps: CONSTANTS, then Classes, then functions.
    kind = 0 if name.isupper() else 1 if name[:1].isupper() else 2
    return kind, name


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_names_what_exists(name: str) -> None:
    package = importlib.import_module(name)
    exported = list(package.__all__)
    assert exported == sorted(exported, key=_isort_key), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported)
    for symbol in exported:
        assert hasattr(package, symbol), f"{name}.__all__ names {symbol}, which is missing"


@pytest.mark.parametrize("name", PACKAGES)
def test_every_public_name_is_in_all(name: str) -> None:
    package = importlib.import_module(name)
    public = {
        symbol
        for symbol, value in vars(package).items()
        if not symbol.startswith("_") and not inspect.ismodule(value)
    }
    assert public <= set(package.__all__), f"{name} exports names missing from __all__"


def test_journals_never_imports_runtime() -> None:
    import pathlib

    root = pathlib.Path(str(importlib.import_module("journals").__file__)).parent
    for module in root.glob("*.py"):
        text = module.read_text(encoding="utf-8")
        assert "import runtime" not in text, module.name
        assert "from runtime" not in text, module.name


@pytest.mark.parametrize("name", PACKAGES)
def test_every_exported_error_is_in_the_drawn_hierarchy(name: str) -> None:
    # The docstring of each package's _exceptions.py draws the hierarchy users read first.
    package = importlib.import_module(name)
    hierarchy = importlib.import_module(f"{name}._exceptions").__doc__ or ""
    drawn = {line.lstrip(" │├└─").split(" ")[0] for line in hierarchy.splitlines()}
    errors = {
        symbol
        for symbol in package.__all__
        if isinstance(getattr(package, symbol), type)
        and issubclass(getattr(package, symbol), BaseException)
        and getattr(package, symbol).__module__ == f"{name}._exceptions"
    }
    assert errors <= drawn, f"{name}: errors missing from the hierarchy: {errors - drawn}"
