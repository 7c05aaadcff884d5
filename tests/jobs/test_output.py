"""The one output policy of every command: what is refused, what is replaced, what is left behind."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from polytask._core import PolytaskError
from polytask.jobs import output
from polytask.jobs.output import (
    MARKER,
    output_folder,
    partial_path,
    write_output_file,
)


def _write(folder: Path, name: str = "a.txt") -> None:
    (folder / name).write_text("x")


def _open(out: Path, **flags: bool) -> None:
    with output_folder(out, "t", **flags):
        pass


def _hidden(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_a_new_folder_is_built_beside_and_renamed(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_folder(out, "test") as work:
        assert work == partial_path(out) and work.is_dir() and not out.exists()
        _write(work)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "a.txt"]
    assert json.loads((out / MARKER).read_text())["command"] == "test"
    assert _hidden(tmp_path) == []


def test_a_failed_command_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), output_folder(out, "test") as work:
        _write(work)
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_keep_commits_what_is_worth_keeping(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), output_folder(out, "t", keep=lambda w: True) as work:
        _write(work)
        raise RuntimeError("stopped after a checkpoint")
    assert (out / "a.txt").is_file() and _hidden(tmp_path) == []


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_what_polytask_did_not_make_is_never_replaced(tmp_path: Path, flags: dict) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    _write(foreign, "keep.txt")
    a_file = tmp_path / "file.txt"
    a_file.write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(foreign)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [
        (foreign, "a folder polytask did not make"),
        (a_file, "is a file"),
        (link, "is a symbolic link"),
        (fifo, "a device or special file"),
    ]
    for target, what in cases:
        with pytest.raises(PolytaskError, match=what), output_folder(target, "t", **flags):
            pass
    assert [p.name for p in foreign.iterdir()] == ["keep.txt"] and a_file.read_text() == "mine"
    assert link.is_symlink() and fifo.exists()


def test_an_own_folder_needs_a_flag_and_overwrite_replaces_it_only_when_done(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    with output_folder(out, "t") as work:
        _write(work, "old.txt")
    with pytest.raises(PolytaskError, match="use --resume to continue it or --overwrite"):
        _open(out)
    with pytest.raises(RuntimeError), output_folder(out, "t", overwrite=True) as work:
        _write(work, "new.txt")
        raise RuntimeError("failed")
    assert (out / "old.txt").is_file() and _hidden(tmp_path) == []  # the old one survives
    with output_folder(out, "t", overwrite=True) as work:
        _write(work, "new.txt")
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "new.txt"]


def test_resume_continues_in_place(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with output_folder(out, "t") as work:
        _write(work, "a.txt")
    with output_folder(out, "t", resume=True) as work:
        assert work == out
        _write(work, "b.txt")
    assert {"a.txt", "b.txt"} <= {p.name for p in out.iterdir()}


def test_a_killed_command_is_resumed_or_cleaned(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = partial_path(out)
    stale.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    info = {"command": "t", "pid": int(dead.stdout), "host": os.uname().nodename}
    (stale / MARKER).write_text(json.dumps(info))
    _write(stale, "ckpt.txt")
    junk = tmp_path / f".{out.name}.abc123.tmp"  # an atomic write a killed merge left
    junk.mkdir()
    with output_folder(out, "t", resume=True) as work:  # --resume adopts the partial folder
        assert work == stale and (work / "ckpt.txt").is_file()
    assert (out / "ckpt.txt").is_file() and _hidden(tmp_path) == []
    stale.mkdir()
    (stale / MARKER).write_text("{}")
    with output_folder(tmp_path / "out2", "t"):
        pass
    with output_folder(out, "t", overwrite=True) as work:  # a new run removes it
        assert not (work / "ckpt.txt").exists()
    assert _hidden(tmp_path) == []


def test_a_live_writer_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        partial_path(out).mkdir()
        info = {"command": "train", "pid": live.pid, "host": os.uname().nodename}
        (partial_path(out) / MARKER).write_text(json.dumps(info))
        with pytest.raises(PolytaskError, match=rf"another polytask command \(pid {live.pid}\)"):
            _open(out)
        other = {"command": "train", "pid": 1, "host": "elsewhere"}  # cannot be checked: refused
        (partial_path(out) / MARKER).write_text(json.dumps(other))
        with pytest.raises(PolytaskError, match="pid 1 on host elsewhere; if it has stopped"):
            _open(out)
    finally:
        live.kill()
        live.wait()


def test_disk_errors_are_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(output, "_commit", full)
    with pytest.raises(PolytaskError, match=r"cannot write .*out: no space left on device"):
        _open(tmp_path / "out")
    monkeypatch.undo()
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(PolytaskError, match="cannot write"):
        _open(blocker / "out")


def test_output_files(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    write_output_file(report, json.dumps({"schema_version": 1, "metrics": {}}))
    write_output_file(report, json.dumps({"schema_version": 1, "metrics": {"a": 1}}))
    assert json.loads(report.read_text())["metrics"] == {"a": 1}  # its own report: replaced
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    with pytest.raises(PolytaskError, match="a file polytask did not write"):
        write_output_file(mine, "{}")
    with pytest.raises(PolytaskError, match="a folder polytask did not make"):
        write_output_file(tmp_path, "{}")
    with pytest.raises(PolytaskError, match="not a folder"):
        write_output_file(mine / "x.json", "{}")
    assert mine.read_text() == "mine"
    with pytest.raises(PolytaskError, match="a device or special file"):
        write_output_file(Path("/dev/null"), "{}")
