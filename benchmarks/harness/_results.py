"""The values a benchmark run produces: figures, ratios, scenario results and the report."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._stats import Summary

_EMPTY: Mapping[str, Any] = {}


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured quantity of a scenario, summarized over its repetitions.

    ``name`` is a stable identifier (``commands_per_s``); ``parameters`` say which point of a
    sweep it is (``{"callers": 100}``); ``durable`` is False only for figures measured without
    fsync, which every output labels as not durable.
    """

    scenario: str
    name: str
    label: str
    unit: str
    summary: Summary
    parameters: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    durable: bool = True
    higher_is_better: bool = True

    @property
    def key(self) -> str:
        """``scenario.name`` plus the parameters: unique within a run."""
        suffix = "".join(f"[{name}={value}]" for name, value in self.parameters.items())
        return f"{self.scenario}.{self.name}{suffix}"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "scenario": self.scenario,
            "name": self.name,
            "label": self.label,
            "unit": self.unit,
            "parameters": dict(self.parameters),
            "durable": self.durable,
            "higher_is_better": self.higher_is_better,
            "median": self.summary.median,
            "min": self.summary.minimum,
            "max": self.summary.maximum,
            "samples": list(self.summary.samples),
        }


@dataclass(frozen=True, slots=True)
class Ratio:
    """``numerator / denominator`` of two figures of the same run, with what it compares."""

    subject: str
    """What is compared: the numerator figure, described (``many-actors ... (callers=100)``)."""

    reads: str
    """How the ratio reads (``x the write+fdatasync loop``, ``of the orjson encode rate``)."""

    value: float
    numerator: str
    denominator: str
    kind: str
    """``limit`` (against the machine's ceilings) or ``peer`` (against another library)."""

    target: float | None = None
    """The ratio the project aims for, when it states one."""

    percent: bool = False
    """Read as a share of the denominator (``12 %``) rather than a multiple (``12x``)."""

    @property
    def label(self) -> str:
        return f"{self.subject}: {self.reads}"

    @property
    def met(self) -> bool | None:
        """Whether the target is met; None when there is no target."""
        return None if self.target is None else self.value >= self.target

    @property
    def text(self) -> str:
        """``12.3x`` or ``4.5 %``."""
        if self.percent:
            return f"{self.value * 100:.3g} %"
        return f"{self.value:,.0f}x" if self.value >= 100 else f"{self.value:.3g}x"

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "subject": self.subject,
            "reads": self.reads,
            "value": self.value,
            "numerator": self.numerator,
            "denominator": self.denominator,
            "kind": self.kind,
            "target": self.target,
            "percent": self.percent,
            "met": self.met,
        }


@dataclass(frozen=True, slots=True)
class TargetCheck:
    """A figure of this run set against a target stated by the project (met or not)."""

    label: str
    figure: str
    value: float
    target: float
    higher_is_better: bool

    @property
    def met(self) -> bool:
        return self.value >= self.target if self.higher_is_better else self.value <= self.target

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "figure": self.figure,
            "value": self.value,
            "target": self.target,
            "comparison": ">=" if self.higher_is_better else "<=",
            "met": self.met,
        }


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """What one scenario measured, or why it was skipped."""

    name: str
    title: str
    figures: tuple[Figure, ...] = ()
    notes: tuple[str, ...] = ()
    skipped: str | None = None
    settings: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    elapsed_s: float = 0.0

    def figure(self, name: str, **parameters: Any) -> Figure:
        """The figure called ``name`` at ``parameters``; KeyError naming what exists otherwise."""
        for figure in self.figures:
            if figure.name == name and dict(figure.parameters) == parameters:
                return figure
        known = ", ".join(figure.key for figure in self.figures) or "none"
        raise KeyError(f"scenario {self.name!r} has no figure {name!r} at {parameters}: {known}")

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "skipped": self.skipped,
            "notes": list(self.notes),
            "settings": dict(self.settings),
            "elapsed_s": self.elapsed_s,
            "figures": [figure.to_json() for figure in self.figures],
        }


@dataclass(frozen=True, slots=True)
class BenchReport:
    """A whole run: where and how it ran, every scenario's result and the derived ratios."""

    started_at: str
    machine: Mapping[str, Any]
    settings: Mapping[str, Any]
    scenarios: tuple[ScenarioResult, ...]
    ratios: tuple[Ratio, ...]
    targets: tuple[TargetCheck, ...]
    warnings: tuple[str, ...]
    elapsed_s: float

    def scenario(self, name: str) -> ScenarioResult:
        for result in self.scenarios:
            if result.name == name:
                return result
        raise KeyError(f"this run has no scenario {name!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": "eventfold-bench/1",
            "started_at": self.started_at,
            "elapsed_s": self.elapsed_s,
            "machine": dict(self.machine),
            "settings": dict(self.settings),
            "warnings": list(self.warnings),
            "scenarios": [result.to_json() for result in self.scenarios],
            "ratios": [ratio.to_json() for ratio in self.ratios],
            "targets": [target.to_json() for target in self.targets],
        }
