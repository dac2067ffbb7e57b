"""Text for people: numbers, figure lines and the console summary of a run."""

from __future__ import annotations

from collections.abc import Iterable

from ._results import BenchReport, Figure, Ratio, ScenarioResult, TargetCheck

NOT_DURABLE = "NOT DURABLE"


def number(value: float) -> str:
    """A figure with as many digits as it deserves: 123,456 / 12.3 / 0.123 / 0.00123."""
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def parameters_text(figure: Figure) -> str:
    return ", ".join(f"{name}={value}" for name, value in figure.parameters.items())


def figure_line(figure: Figure) -> str:
    """``label  parameters  median unit  (min - max)``, flagged when not durable."""
    summary = figure.summary
    unit = f" {figure.unit}" if figure.unit else ""
    flag = f"  [{NOT_DURABLE}]" if not figure.durable else ""
    return (
        f"  {figure.label:<40} {parameters_text(figure):<30} {number(summary.median):>12}{unit:<7}"
        f" ({number(summary.minimum)} - {number(summary.maximum)}){flag}"
    )


def ratio_line(ratio: Ratio) -> str:
    return f"  {ratio.text:>10}  {ratio.label}{_verdict(ratio)}"


def _verdict(ratio: Ratio) -> str:
    if ratio.target is None:
        return ""
    return f" (target >= {ratio.target:g}x: {'met' if ratio.met else 'NOT met'})"


def ratio_piece(ratio: Ratio) -> str:
    """``34.3x the write+fdatasync loop`` or ``0.2 % of the orjson encode rate``."""
    return f"{ratio.text} {ratio.reads.removeprefix('x ')}{_verdict(ratio)}"


def grouped_by_subject(ratios: Iterable[Ratio]) -> dict[str, list[Ratio]]:
    """Ratios of one figure together, in the order they come."""
    groups: dict[str, list[Ratio]] = {}
    for ratio in ratios:
        groups.setdefault(ratio.subject, []).append(ratio)
    return groups


def target_line(check: TargetCheck) -> str:
    comparison = ">=" if check.higher_is_better else "<="
    verdict = "met" if check.met else "NOT met"
    return (
        f"  {check.label:<50} {number(check.value):>12}  target {comparison} "
        f"{number(check.target)}: {verdict}"
    )


def fsync_headline(limits: ScenarioResult) -> str:
    """The first line of every run: what one durable write costs on this disk."""
    latency = limits.figure("fdatasync_latency_ms").summary
    rate = limits.figure("fdatasync_per_s").summary
    chunks = len(latency.samples)
    return (
        f"disk: write+fdatasync {number(latency.median)} ms median "
        f"({number(latency.minimum)} - {number(latency.maximum)} ms over {chunks} chunks), "
        f"{number(rate.median)} durable writes/s for one unbatched writer"
    )


def scenario_lines(result: ScenarioResult) -> list[str]:
    lines = [f"== {result.name}: {result.title} =="]
    if result.skipped is not None:
        return [*lines, f"  skipped: {result.skipped}"]
    lines.extend(figure_line(figure) for figure in result.figures)
    lines.extend(f"  note: {note}" for note in result.notes)
    lines.append(f"  ({result.elapsed_s:.1f} s)")
    return lines


def _section(title: str, lines: Iterable[str]) -> list[str]:
    body = list(lines)
    return [f"== {title} ==", *body] if body else []


def summary_lines(report: BenchReport) -> list[str]:
    """Ratios and targets, printed after the scenarios."""
    peer = [ratio_line(r) for r in report.ratios if r.kind == "peer"]
    limits = [
        f"  {subject}: " + ", ".join(ratio_piece(ratio) for ratio in ratios)
        for subject, ratios in grouped_by_subject(
            r for r in report.ratios if r.kind == "limit"
        ).items()
    ]
    targets = [target_line(check) for check in report.targets]
    return [
        *_section("against the peer (same run)", peer),
        *_section("against the machine's limits (same run)", limits),
        *_section("targets", targets),
        f"total {report.elapsed_s:.1f} s",
    ]
