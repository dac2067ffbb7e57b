"""What a run ran on: machine, operating system, Python, library versions and the disk."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from pathlib import Path
from typing import Any

_DISTRIBUTIONS = (
    "eventfold",
    "anyio",
    "orjson",
    "aiofiles",
    "trio",
    "uvloop",
    "zlib-ng",
    "eventsourcing",
)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _filesystem_type(directory: Path) -> str | None:
    """The type of the filesystem holding ``directory`` (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as mounts:
            entries = [line.split() for line in mounts]
    except OSError:
        return None
    resolved = str(directory.resolve())
    best: tuple[int, str] | None = None
    for entry in entries:
        if len(entry) < 3:
            continue
        mount_point, fs_type = entry[1], entry[2]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and (best is None or len(mount_point) > best[0]):
            best = (len(mount_point), fs_type)
    return best[1] if best else None


MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
"""Filesystems held in memory: fsync returns at once and nothing reaches stable storage."""


def memory_filesystem_warning(filesystem: str | None) -> str | None:
    """A warning when the journals are on a filesystem in memory, where fsync means nothing.

    The figures of such a run measure no disk: they are what a journal without fsync does,
    so the run labels them as it labels ``--not-durable`` ones.
    """
    if filesystem not in MEMORY_FILESYSTEMS:
        return None
    return (
        f"the journals are on {filesystem}, a filesystem held in memory: fsync reaches no disk, "
        f"so no figure of this run is durable (they are marked NOT DURABLE and no target is "
        f"checked); measure a disk with --journal-dir DIR, or TMPDIR=DIR for the temporary "
        f"directory"
    )


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages, where the system reports them."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def busy_warning(load: list[float] | None, cpus: int | None) -> str | None:
    """A warning when other work kept the CPUs busy just before the run (1-minute load)."""
    if load is None or not cpus or load[0] < 0.5 * cpus:
        return None
    return (
        f"the machine was busy when the run started (load average {load[0]:.2f} on {cpus} "
        f"CPUs): other processes compete for the CPUs and the disk, so figures are lower and "
        f"noisier than on a quiet machine; rerun when it is idle"
    )


def machine_info(journal_dir: Path) -> dict[str, Any]:
    """Machine and version information for the JSON output and the report.

    No path is recorded: only the type of the filesystem the journal was measured on, and
    whether that filesystem is held in memory (then no figure is durable).
    """
    filesystem = _filesystem_type(journal_dir)
    return {
        "platform": platform.platform(),
        "system": platform.system(),
        "kernel": platform.release(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": _memory_bytes(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "filesystem": filesystem,
        "filesystem_in_memory": filesystem in MEMORY_FILESYSTEMS,
        "load_average_at_start": load_average(),
        "versions": {name: _version(name) for name in _DISTRIBUTIONS},
    }
