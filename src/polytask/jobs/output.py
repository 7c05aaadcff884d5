"""One output policy for every command that writes a folder or a file.

A command's output folder ``OUT`` is built in a hidden sibling, ``.OUT.polytask-partial``, and
renamed to ``OUT`` when the command succeeds, so a failed command leaves neither ``OUT`` nor a
temporary behind. The partial folder carries a marker (``.polytask``: the command, its pid and
host); a command killed outright leaves its partial folder, which the next command on the same
``OUT`` either continues (``--resume``) or removes. Rules, the same for ``train``, ``eval``,
``merge`` and ``affinity``:

* ``OUT`` missing or an empty folder: written.
* ``OUT`` a folder polytask made (a marker, or a run's ``run.json``): refused unless ``--resume``
  (continue it in place) or ``--overwrite`` (replaced only once the new output is complete).
* ``OUT`` anything else — a file, a symlink, a device, a folder polytask did not make: refused in
  one line, whatever the flags.
* Another live command writing the same ``OUT``: refused in one line.
* A training run that fails or is interrupted after its first checkpoint keeps ``OUT`` (without
  ``report.json``): ``--resume`` continues it. One killed outright leaves its partial folder,
  which ``--resume`` continues too.

Files (``eval --out report.json``) follow the same rules: a new file, or one polytask wrote
(a report with ``schema_version``), replaced atomically; anything else refused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from polytask import __version__
from polytask._core import PolytaskError, write_text

MARKER = ".polytask"
#: files that mark a folder made by polytask before markers existed
KNOWN_FILES = ("run.json", "merge.json", "affinity.json", "report.json")


def partial_path(out: Path) -> Path:
    """The hidden sibling a command builds ``out`` in."""
    return out.parent / f".{out.name}.polytask-partial"


def is_polytask_folder(path: Path) -> bool:
    """Whether ``path`` is a real folder (not a symlink) that polytask made."""
    if path.is_symlink() or not path.is_dir():
        return False
    return any((path / name).is_file() for name in (MARKER, *KNOWN_FILES))


def _what(path: Path) -> str:
    mode = path.lstat().st_mode
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder polytask did not make"
    if stat.S_ISREG(mode):
        return "a file"
    return "a device or special file"


def _marker(command: str) -> str:
    info = {"command": command, "pid": os.getpid(), "host": socket.gethostname()}
    return json.dumps({**info, "polytask_version": __version__}) + "\n"


def _live_writer(folder: Path) -> str | None:
    """Who may still be writing ``folder``: a live pid on this host, or any pid on another host
    (which cannot be checked from here); None when its writer is gone."""
    try:
        info = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        pid, host = int(info["pid"]), str(info["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if host != socket.gethostname():
        return f"pid {pid} on host {host}; if it has stopped, remove {folder}"
    if pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return f"pid {pid}"
    return f"pid {pid}"


def check_target(out: Path, *, resume: bool, overwrite: bool, can_resume: bool = True) -> str:
    """How ``out`` will be written: ``"new"``, ``"resume"`` or ``"replace"``; else one line."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise PolytaskError(f"{out} is {_what(out)}; give --out a new folder")
    if out.is_dir() and any(out.iterdir()):
        if not is_polytask_folder(out):
            raise PolytaskError(f"{out} is {_what(out)}; polytask only writes into its own folders")
        if resume:
            return "resume"
        if overwrite:
            return "replace"
        hint = "--resume to continue it or --overwrite" if can_resume else "--overwrite"
        raise PolytaskError(
            f"output folder {out} already exists and is not empty; use {hint} to replace it"
        )
    return "new"


def _io_error(out: Path, exc: OSError) -> PolytaskError:
    reason = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system"}
    why = reason.get(exc.errno or 0, exc.strerror or str(exc))
    return PolytaskError(f"cannot write {out}: {why}")


@contextlib.contextmanager
def output_folder(
    out: str | Path, command: str, *, resume: bool = False, overwrite: bool = False,
    writes: bool = True, keep: Callable[[Path], bool] | None = None, can_resume: bool = True,
) -> Iterator[Path]:  # fmt: skip
    """Yield the folder to write ``out`` in; on success it becomes ``out`` (see the module).

    ``resume`` continues ``out`` in place, or a partial folder a killed command left. When the
    command fails or is interrupted and ``keep(folder)`` says what it wrote is worth keeping (a
    training run with a checkpoint to resume from), the folder still becomes ``out`` before the
    error propagates; otherwise it is removed. With
    ``writes=False`` (a non-zero rank) nothing is touched: the yielded path is the one rank 0
    writes.
    """
    out = Path(out)
    if not writes:  # rank 0 checks and claims; the others only need the path
        continuing = resume and out.is_dir() and any(out.iterdir())
        yield out if continuing else partial_path(out)
        return
    mode = check_target(out, resume=resume, overwrite=overwrite, can_resume=can_resume)
    work = out if mode == "resume" else partial_path(out)
    try:
        _claim(out, work, command, resume)
    except OSError as exc:
        raise _io_error(out, exc) from None
    try:
        yield work
    except BaseException:
        if keep is not None and keep(work):
            _commit(out, work)
        elif work != out:
            shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        _commit(out, work)
    except OSError as exc:
        raise _io_error(out, exc) from None


def _claim(out: Path, work: Path, command: str, resume: bool) -> None:
    partial = partial_path(out)
    if partial.exists():
        if not is_polytask_folder(partial) or partial.is_symlink():
            raise PolytaskError(f"{partial} is {_what(partial)}; remove it or choose another --out")
        writer = _live_writer(partial)
        if writer is not None:
            raise PolytaskError(f"another polytask command ({writer}) is writing {out}")
        if not (resume and work == partial):
            shutil.rmtree(partial)  # left by a command that was killed
    for stale in (*out.parent.glob(f".{out.name}.*.tmp"), *out.parent.glob(f".{partial.name}.*")):
        if stale.is_dir() and not stale.is_symlink():  # atomic writes a killed command left
            shutil.rmtree(stale, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    work.mkdir(exist_ok=True)
    write_text(work / MARKER, _marker(command))


def _commit(out: Path, work: Path) -> None:
    if work == out:
        return
    old = out.parent / f".{out.name}.polytask-old"
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        os.replace(out, old)  # an empty folder, or a polytask output being overwritten
    os.replace(work, out)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def write_output_file(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: a new file or a report polytask wrote; else refuse."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise PolytaskError(f"{path} is {_what(path)}; give --out a new file")
    if path.is_file() and not _is_report(path):
        raise PolytaskError(f"{path} is a file polytask did not write; give --out a new file")
    if path.parent.exists() and not path.parent.is_dir():
        raise PolytaskError(f"cannot write {path}: {path.parent} is not a folder")
    try:
        write_text(path, text)
    except OSError as exc:
        raise _io_error(path, exc) from None


def _is_report(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and ("schema_version" in data or "polytask_version" in data)
