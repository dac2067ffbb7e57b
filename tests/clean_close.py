"""Taking a cleanly closed journal's clean-close record away, as a crash would have.

A journal that closes cleanly records where it ends (``closed-cleanly``), and opening refuses
any damage at that end. A crash never leaves the record behind. Tests that cut or damage the
end of a closed journal to stand for a write torn by a crash remove it first, as the crash
would have: the damage is then a torn tail, and opening cuts it. Tests of what reads or
opening make of a forged record take it away too, as the forger would.
"""

from __future__ import annotations

from pathlib import Path

from journals._clean_close import CLEAN_CLOSE_FILE_NAME


def without_clean_close(directory: Path | str) -> None:
    """Remove the clean-close record; fails if the journal in ``directory`` left none."""
    (Path(directory) / CLEAN_CLOSE_FILE_NAME).unlink()
