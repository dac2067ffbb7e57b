"""The benchmark scripts refuse counts and durations that would measure nothing."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import crash_campaign, fuzz_decoder
from benchmarks._arguments import positive_int, positive_seconds


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "many"])
def test_a_count_below_one_or_not_whole_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "soon"])
def test_seconds_that_are_not_a_finite_time_above_zero_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_seconds(text)


def test_good_values_pass_as_numbers() -> None:
    assert positive_int("7") == 7
    assert positive_seconds("0.25") == 0.25


@pytest.mark.parametrize(
    ("main", "argv"),
    [
        (crash_campaign.main, ["--kills-per-journal", "0"]),  # divided by zero before
        (crash_campaign.main, ["--kills", "0"]),
        (fuzz_decoder.main, ["--directory-every", "0"]),  # a modulo by zero before
    ],
)
def test_the_scripts_refuse_a_zero_count_as_a_usage_error(
    main: object, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)  # type: ignore[operator]
    assert exited.value.code == 2
    assert "is not a count of 1 or more" in capsys.readouterr().err
