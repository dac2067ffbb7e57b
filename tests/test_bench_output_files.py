"""``--json`` and ``--report`` files are written whole: a failed write keeps the old file."""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import signal
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness import BenchReport
from benchmarks.harness import _cli as harness_cli
from benchmarks.harness._output_files import write_whole
from benchmarks.harness._paths import file_problem

PREVIOUS = '{"format": "eventfold-bench/1", "previous": "run"}\n'
FILE_BYTES_MAX = 4096


@contextmanager
def a_full_disk() -> Iterator[None]:
    """Writes past ``FILE_BYTES_MAX`` bytes of any file fail (EFBIG), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_BYTES_MAX, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def a_large_report() -> BenchReport:
    return BenchReport(
        started_at="2026-01-01T00:00:00+00:00",
        machine={},
        settings={},
        scenarios=(),
        ratios=(),
        targets=(),
        warnings=tuple(f"warning {index}" for index in range(FILE_BYTES_MAX // 10)),
        elapsed_s=1.0,
    )


def test_a_json_file_that_cannot_be_written_whole_is_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    json_path = tmp_path / "bench.json"
    json_path.write_text(PREVIOUS, encoding="utf-8")
    arguments = argparse.Namespace(json=json_path, report=None)
    with a_full_disk():
        written = harness_cli._write_outputs(arguments, a_large_report(), io.StringIO())
    assert not written
    assert json_path.read_text(encoding="utf-8") == PREVIOUS, "the previous run's file is kept"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["bench.json"]
    assert f"argument --json: cannot write {json_path}: File too large" in capsys.readouterr().err


def test_an_interrupted_write_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "report.md"
    path.write_text("an earlier report\n", encoding="utf-8")

    def interrupted(source: object, destination: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_whole(path, "a new report\n")
    assert path.read_text(encoding="utf-8") == "an earlier report\n"
    assert sorted(each.name for each in tmp_path.iterdir()) == ["report.md"]


def test_a_replaced_file_keeps_its_permissions_and_its_link(tmp_path: Path) -> None:
    real = tmp_path / "runs" / "bench.json"
    real.parent.mkdir()
    real.write_text(PREVIOUS, encoding="utf-8")
    real.chmod(0o640)
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    write_whole(link, '{"new": 1}\n')
    assert link.is_symlink()
    assert json.loads(real.read_text(encoding="utf-8")) == {"new": 1}
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(each.name for each in real.parent.iterdir()) == ["bench.json"]


def test_an_error_names_the_file_asked_for(tmp_path: Path) -> None:
    target = tmp_path / "bench.json"
    target.mkdir()
    with pytest.raises(IsADirectoryError) as raised:
        write_whole(target, "{}\n")
    assert raised.value.filename == str(target)
    assert sorted(each.name for each in tmp_path.iterdir()) == ["bench.json"]


def test_a_json_file_in_a_directory_that_cannot_be_written_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file is writable, but replacing it needs a new file beside it.
    json_path = tmp_path / "bench.json"
    json_path.write_text(PREVIOUS, encoding="utf-8")
    real_access = os.access

    def access(path: Any, mode: int, **keywords: Any) -> bool:
        read_only = Path(path) == tmp_path and mode & os.W_OK
        return not read_only and real_access(path, mode, **keywords)

    monkeypatch.setattr(os, "access", access)
    assert file_problem("--json", json_path) == (
        f"argument --json: {tmp_path} is not writable (permission denied)"
    )


def test_a_pipe_is_written_in_place_never_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As --json /dev/stdout or /dev/null: what is not a regular file must stay what it is.
    pipe = tmp_path / "bench.json"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)
    try:
        write_whole(pipe, '{"new": 1}\n')
        assert os.read(reader, 4096) == b'{"new": 1}\n'
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.stat(pipe).st_mode)
    assert sorted(each.name for each in tmp_path.iterdir()) == ["bench.json"]
    # Nor does its directory need to be writable.
    real_access = os.access

    def access(path: Any, mode: int, **keywords: Any) -> bool:
        read_only = Path(path) == tmp_path and mode & os.W_OK
        return not read_only and real_access(path, mode, **keywords)

    monkeypatch.setattr(os, "access", access)
    assert file_problem("--json", pipe) is None
