"""How often a repeated failure is logged in full: ``runtime._repeats``, on a held clock."""

from __future__ import annotations

import gc
import weakref

from runtime._repeats import REPEAT_INTERVAL_S, REPEAT_KINDS_MAX, Repeats


def _made_on_the_fly(number: int) -> type[Exception]:
    # As some libraries make their exception classes: one class per client, per request, per
    # remote error. Each is another kind of failure.
    return type(f"RemoteError{number}", (Exception,), {})


def test_kinds_made_on_the_fly_are_not_kept_for_ever() -> None:
    moment = [0.0]
    repeats = Repeats(now=lambda: moment[0])
    first = _made_on_the_fly(0)
    assert repeats.due("told command", first()) == 0
    gone = weakref.ref(first)
    del first
    for number in range(1, REPEAT_KINDS_MAX + 1):
        moment[0] += 0.001
        assert repeats.due("told command", _made_on_the_fly(number)()) == 0
    gc.collect()
    # Remembered without a bound, every such class (and what it refers to) would stay alive
    # as long as the runtime, however long ago its one failure was.
    assert gone() is None


def test_the_kinds_remembered_last_are_still_paced() -> None:
    moment = [0.0]
    repeats = Repeats(now=lambda: moment[0])
    classes = [_made_on_the_fly(number) for number in range(2 * REPEAT_KINDS_MAX)]
    for cls in classes:
        moment[0] += 0.001
        repeats.due("told command", cls())
    # The most recent kinds, within their minute, still go to debug level and are counted.
    assert repeats.due("told command", classes[-1]()) is None
    assert repeats.due("told command", classes[-REPEAT_KINDS_MAX]()) is None
    moment[0] += REPEAT_INTERVAL_S
    assert repeats.due("told command", classes[-1]()) == 1
    # The oldest were forgotten: their next failure is logged in full, as a first one.
    assert repeats.due("told command", classes[0]()) == 0


def test_a_kind_logged_again_is_the_newest_and_kept() -> None:
    moment = [0.0]
    repeats = Repeats(now=lambda: moment[0])
    assert repeats.due("told command", ValueError()) == 0
    moment[0] = REPEAT_INTERVAL_S  # its minute has passed: logged in full again, now
    assert repeats.due("told command", ValueError()) == 0
    for number in range(REPEAT_KINDS_MAX - 1):
        moment[0] += 0.001
        repeats.due("told command", _made_on_the_fly(number)())
    # Logged in full last after REPEAT_KINDS_MAX - 1 others: not the one forgotten first.
    assert repeats.due("told command", ValueError()) is None
