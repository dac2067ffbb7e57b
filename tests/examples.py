"""How many examples the property tests and state machines try: a short run in the suite, a
long one on demand.

The suite keeps to its time (about five minutes on two cores, with coverage): each count
given to ``examples`` is what one run of the suite tries. ``python -m
benchmarks.property_campaign --scale N`` runs the same tests with ``EVENTFOLD_EXAMPLES_SCALE``
set to ``N``, which multiplies every such count: the same checks, over N times the examples.
"""

from __future__ import annotations

import os

SCALE_VARIABLE = "EVENTFOLD_EXAMPLES_SCALE"


def _scale() -> int:
    text = os.environ.get(SCALE_VARIABLE, "1")
    try:
        scale = int(text)
    except ValueError:
        scale = 0
    if scale < 1:
        raise ValueError(f"{SCALE_VARIABLE} must be a whole number of 1 or more, not {text!r}")
    return scale


SCALE = _scale()


def examples(count: int) -> int:
    """``count`` examples in the suite; ``count`` times the scale in a campaign."""
    return count * SCALE
