"""The report's pieces: number formatting, the SVG charts and the Markdown."""

from __future__ import annotations

from dataclasses import replace
from xml.etree import ElementTree

from benchmarks.harness._format import figure_line, number
from benchmarks.harness._report import latency_svg, markdown
from benchmarks.harness._results import BenchReport, Figure, Ratio, ScenarioResult, TargetCheck
from benchmarks.harness._stats import summarize
from benchmarks.harness._svg import Point, Series, bar_chart, line_chart

SVG = "{http://www.w3.org/2000/svg}"


def test_numbers_keep_the_digits_they_deserve() -> None:
    assert [number(v) for v in (123_456.7, 42.25, 3.14159, 0.012345)] == [
        "123,457",
        "42.2",
        "3.14",
        "0.0123",
    ]


def test_a_line_chart_draws_every_point_with_its_whisker_and_the_reference() -> None:
    series = [
        Series("a", (Point(1, 10, 9, 11), Point(100, 50, 40, 60), Point(10_000, 80, 70, 90))),
        Series("b", (Point(1, 5, 5, 5),)),
    ]
    root = ElementTree.fromstring(line_chart("t", "x", "y", series, [("fsync", 20.0)]))
    assert len(root.findall(f"{SVG}circle")) == 4
    texts = [text.text for text in root.iter(f"{SVG}text")]
    assert "fsync: 20/s" in texts
    assert {"1", "100", "10k"} <= set(texts)


def test_a_bar_chart_draws_one_bar_per_positive_value() -> None:
    chart = bar_chart("t", "ms", ["g1", "g2"], [("p50", [1.0, 2.0]), ("p99", [3.0, 0.0])])
    root = ElementTree.fromstring(chart)
    # One background rectangle, three bars and one legend swatch per series.
    assert len(root.findall(f"{SVG}rect")) == 1 + 3 + 2


def report(durable: bool) -> BenchReport:
    figure = Figure("many-actors", "commands_per_s", "durable one-event commands/s", "/s",
                    summarize([90_000, 80_000, 100_000]), {"callers": 100}, durable)  # fmt: skip
    return BenchReport(
        started_at="2026-01-01T00:00:00+00:00",
        machine={
            "cpu": "cpu",
            "cpu_count": 2,
            "cpu_usable": 2,
            "memory_bytes": 2**34,
            "platform": "Linux",
            "filesystem": "ext4",
            "python": "3.11.7",
            "python_implementation": "CPython",
            "versions": {"eventfold": "0.1.0", "uvloop": None},
        },
        settings={"suite": "full", "durable": durable},
        scenarios=(ScenarioResult("many-actors", "Many actors", figures=(figure,)),),
        ratios=(
            Ratio(
                "a ratio", "x it", 30.0, figure.key, "peer.commands_per_s[callers=1]", "peer", 25
            ),
        ),
        targets=(TargetCheck("a target", figure.key, 90_000, 80_000, True),),
        warnings=("a warning",),
        elapsed_s=60.0,
    )


def test_the_markdown_report_holds_figures_ratios_targets_and_warnings() -> None:
    text = markdown(report(durable=True))
    assert "| durable one-event commands/s | callers=100 | 90,000 | 80,000 - 100,000 | /s |" in text
    assert "| a ratio: x it | 30x | >= 25x | yes |" in text
    assert "| a target | 90,000 | >= 80,000 | yes |" in text
    assert "> Warning: a warning" in text
    assert "eventfold 0.1.0" in text
    assert "uvloop" not in text, "libraries that are not installed are not listed"
    assert "NOT DURABLE" not in text


def test_not_durable_figures_are_flagged_in_the_report_and_on_the_console() -> None:
    text = markdown(report(durable=False))
    assert "durable one-event commands/s **NOT DURABLE**" in text
    figure = report(durable=False).scenarios[0].figures[0]
    assert figure_line(figure).endswith("[NOT DURABLE]")


def _latency(scenario: str, durable: bool, **at: object) -> list[Figure]:
    return [
        Figure(scenario, f"latency_ms_{label}", "latency", "ms", summarize([value]), at, durable)
        for label, value in (("p50", 1.0), ("p99", 2.0), ("p99.9", 3.0))
    ]


def test_latency_groups_name_every_point_and_flag_what_is_not_durable() -> None:
    bare = ScenarioResult("bare-loop", "", figures=(
        *_latency("bare-loop", True, shape="hot-actor", in_flight=1000),
        *_latency("bare-loop", True, shape="many-actors", callers=1000),
    ))  # fmt: skip
    hot = ScenarioResult(
        "hot-actor", "", figures=tuple(_latency("hot-actor", False, in_flight=1000))
    )
    chart = latency_svg(replace(report(durable=True), scenarios=(bare, hot)))
    texts = [text.text for text in ElementTree.fromstring(chart).iter(f"{SVG}text")]
    assert "bare-loop hot-actor 1000" in texts
    assert "bare-loop many-actors 1000" in texts
    assert "hot-actor 1000 (NOT DURABLE)" in texts
