"""The human report: Markdown with two SVG charts, written to a directory."""

from __future__ import annotations

from pathlib import Path

from ._format import (
    NOT_DURABLE,
    fsync_headline,
    grouped_by_subject,
    number,
    parameters_text,
    ratio_piece,
)
from ._output_files import write_whole
from ._results import BenchReport, Figure, ScenarioResult
from ._stats import PERCENTILES, percentile_label
from ._svg import Point, Series, bar_chart, line_chart

THROUGHPUT_SVG = "throughput.svg"
LATENCY_SVG = "latency.svg"
REPORT_MD = "report.md"
REPORT_FILES = (REPORT_MD, THROUGHPUT_SVG, LATENCY_SVG)
"""What ``write_report`` writes into its directory."""

# (scenario, figure name, parameter on the x axis, series name)
_THROUGHPUT_SERIES = (
    ("many-actors", "commands_per_s", "callers", "eventfold runtime"),
    ("journal", "events_per_s", "appenders", "FileJournal appends"),
    ("peer", "commands_per_s", "callers", "eventsourcing + SQLite"),
)


def _series(report: BenchReport, scenario: str, name: str, axis: str, label: str) -> Series:
    points = []
    durable = True
    for result in report.scenarios:
        for figure in result.figures:
            if result.name == scenario and figure.name == name and axis in figure.parameters:
                durable &= figure.durable
                s = figure.summary
                points.append(Point(float(figure.parameters[axis]), s.median, s.minimum, s.maximum))
    return Series(label if durable else f"{label} ({NOT_DURABLE})", tuple(points))


def throughput_svg(report: BenchReport) -> str:
    series = [s for s in (_series(report, *spec) for spec in _THROUGHPUT_SERIES) if s.points]
    references = []
    for result in report.scenarios:
        if result.name == "limits" and result.skipped is None:
            rate = result.figure("fdatasync_per_s").summary.median
            references.append(("write+fdatasync loop", rate))
    return line_chart(
        "Durable throughput against concurrency (median, min-max)",
        "concurrent callers (log scale)",
        "durable commands or events per second",
        series,
        references,
    )


def _latency_groups(report: BenchReport) -> tuple[list[str], list[tuple[str, list[float]]]]:
    """One group per scenario and point (``many-actors 100``), one column per percentile."""
    groups: list[str] = []
    columns: dict[float, list[float]] = {p: [] for p in PERCENTILES}
    for result in report.scenarios:
        if result.name in ("limits", "recovery", "activation"):
            continue
        by_point: dict[str, dict[float, float]] = {}
        for figure in result.figures:
            for p in PERCENTILES:
                if figure.name == f"latency_ms_{percentile_label(p)}":
                    # Every parameter's value: the bare loop has two points of 1,000 callers.
                    where = " ".join(map(str, (result.name, *figure.parameters.values())))
                    if not figure.durable:
                        where += f" ({NOT_DURABLE})"
                    by_point.setdefault(where, {})[p] = figure.summary.median
        for where, values in by_point.items():
            groups.append(where)
            for p in PERCENTILES:
                columns[p].append(values.get(p, 0.0))
    return groups, [(percentile_label(p), values) for p, values in columns.items()]


def latency_svg(report: BenchReport) -> str:
    groups, bars = _latency_groups(report)
    references = []
    for result in report.scenarios:
        if result.name == "limits" and result.skipped is None:
            latency = result.figure("fdatasync_latency_ms").summary.median
            references.append(("write+fdatasync", latency))
    return bar_chart(
        "Latency percentiles by scenario and concurrency (log scale)",
        "milliseconds",
        groups,
        bars,
        references,
    )


def _figure_row(figure: Figure) -> str:
    s = figure.summary
    flag = f" **{NOT_DURABLE}**" if not figure.durable else ""
    return (
        f"| {figure.label}{flag} | {parameters_text(figure)} | {number(s.median)} | "
        f"{number(s.minimum)} - {number(s.maximum)} | {figure.unit} |"
    )


def _scenario_section(result: ScenarioResult) -> list[str]:
    lines = [f"### {result.name}: {result.title}", ""]
    if result.skipped is not None:
        return [*lines, f"Skipped: {result.skipped}", ""]
    lines += ["| figure | at | median | min - max | unit |", "|---|---|---:|---:|---|"]
    lines += [_figure_row(figure) for figure in result.figures]
    lines += ["", *(f"- {note}" for note in result.notes)]
    settings = ", ".join(f"{name}={value}" for name, value in result.settings.items())
    took = f"- took {result.elapsed_s:.1f} s" + (f"; settings: {settings}" if settings else "")
    return [*lines, took, ""]


def _machine_lines(report: BenchReport) -> list[str]:
    machine = report.machine
    memory = machine.get("memory_bytes")
    versions = ", ".join(
        f"{name} {version}" for name, version in machine["versions"].items() if version
    )
    return [
        f"- date: {report.started_at}; whole run {report.elapsed_s:.0f} s",
        f"- machine: {machine['cpu']}, {machine['cpu_count']} CPUs "
        f"({machine['cpu_usable']} usable), "
        + (f"{memory / 2**30:.0f} GiB" if memory else "memory unknown"),
        f"- system: {machine['platform']}; filesystem of the journals: {machine['filesystem']}",
        f"- Python {machine['python']} ({machine['python_implementation']}); {versions}",
        "- settings: "
        + ", ".join(f"{k}={v}" for k, v in report.settings.items() if k != "sizes")
        + " (the sizes of every scenario are in the JSON output)",
    ]


def markdown(report: BenchReport) -> str:
    lines = ["# eventfold benchmark report", "", *_machine_lines(report), ""]
    limits = [r for r in report.scenarios if r.name == "limits" and r.skipped is None]
    if limits:
        lines += [f"**{fsync_headline(limits[0])}**", ""]
    lines += [f"> Warning: {warning}" for warning in report.warnings]
    lines += ["", f"![throughput]({THROUGHPUT_SVG})", "", f"![latency]({LATENCY_SVG})", ""]
    lines += ["## Against the peer", "", "| comparison | ratio | target | met |"]
    lines.append("|---|---:|---:|---|")
    for ratio in (r for r in report.ratios if r.kind == "peer"):
        target = "" if ratio.target is None else f">= {ratio.target:g}x"
        met = {None: "", True: "yes", False: "**no**"}[ratio.met]
        lines.append(f"| {ratio.label} | {ratio.text} | {target} | {met} |")
    lines += ["", "## Against the machine's limits", "", "| figure | ratios |", "|---|---|"]
    by_subject = grouped_by_subject(r for r in report.ratios if r.kind == "limit")
    for subject, ratios in by_subject.items():
        lines.append(f"| {subject} | {'; '.join(ratio_piece(r) for r in ratios)} |")
    lines += ["", "## Targets", "", "| target | measured | aim | met |", "|---|---:|---:|---|"]
    for check in report.targets:
        aim = (">= " if check.higher_is_better else "<= ") + number(check.target)
        met = "yes" if check.met else "**no**"
        lines.append(f"| {check.label} | {number(check.value)} | {aim} | {met} |")
    lines += ["", "## Scenarios", ""]
    for result in report.scenarios:
        lines += _scenario_section(result)
    return "\n".join(lines).rstrip() + "\n"


def write_report(report: BenchReport, directory: Path) -> list[Path]:
    """Write report.md, throughput.svg and latency.svg into ``directory`` (created if needed),
    each file whole (``write_whole``)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        (REPORT_MD, markdown(report)),
        (THROUGHPUT_SVG, throughput_svg(report)),
        (LATENCY_SVG, latency_svg(report)),
    ):
        path = directory / name
        write_whole(path, text)
        written.append(path)
    return written
