"""``--help`` everywhere: fast (no torch, no method modules) and complete."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from polytask.cli.main import cli, main
from polytask.config.merge import DATA_METHODS, MERGE_METHODS, MODEL_METHODS, method_options

HEAVY = ("torch", "polytask.merging", "polytask.balancing", "polytask.models")
PROBE = """
import contextlib, io, json, sys
from polytask.cli.main import main
text = io.StringIO()
with contextlib.redirect_stdout(text):
    code = main(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "help": text.getvalue(), "modules": sorted(sys.modules)}))
"""


def _commands() -> list[str]:
    main(["--help"])  # registers the subcommands
    return sorted(cli.commands)


def _help_in_fresh_process(args: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in _commands())], ids=str)
def test_help_imports_no_torch_and_no_methods(args: list[str]) -> None:
    result = _help_in_fresh_process(args)
    assert result["code"] == 0 and "Usage: polytask" in result["help"]
    loaded = [
        m for m in result["modules"] if m in HEAVY or m.startswith(tuple(f"{h}." for h in HEAVY))
    ]
    assert loaded == []


def test_every_command_has_short_help_flags(capsys: pytest.CaptureFixture[str]) -> None:
    for command in _commands():
        capsys.readouterr()
        assert main([command, "-h"]) == 0
        assert capsys.readouterr().out.startswith(f"Usage: polytask {command} ")


def _option_lines(name: str, cls: type) -> list[str]:
    hints = {o: kind for o, kind, _ in method_options(name)}
    lines = []
    for f in dataclasses.fields(cls):
        if f.init:
            lines.append(f"      {f.name}: {hints[f.name]} = {f.default!r}")
    return lines


def test_merge_help_lists_every_method_and_its_options() -> None:
    from polytask.config.merge import method_class

    text = _help_in_fresh_process(["merge", "--help"])["help"]
    lines = text.splitlines()
    for name in [*MERGE_METHODS, *MODEL_METHODS, *DATA_METHODS]:
        cls = method_class(name)  # imported here, in the test process only
        summary = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
        if name in DATA_METHODS:
            head = f"{name} ({cls.__name__}, data.split default "
        else:
            head = f"{name}: {summary}"
        start = next(i for i, line in enumerate(lines) if line.strip().startswith(head))
        assert lines[start].rstrip().endswith(summary)
        expected = _option_lines(name, cls)
        got = lines[start + 1 : start + 1 + len(expected)]
        assert [g.strip() for g in got] == [e.strip() for e in expected], name
        after = lines[start + 1 + len(expected)] if start + 1 + len(expected) < len(lines) else ""
        assert not after.startswith(" " * 6), f"{name}: an option the class does not have"


def test_train_and_affinity_help_come_from_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    from polytask.config.affinity import AffinitySection
    from polytask.config.balancing import BALANCING_METHODS
    from polytask.config.schema import TrainConfig

    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert f"CONFIG sections: {', '.join(TrainConfig.model_fields)}." in text
    assert f"balancing.method: {', '.join(BALANCING_METHODS)}." in text
    for flag in ("--out", "--resume", "--overwrite", "--progress / --no-progress", "--baseline"):
        assert flag in text
    assert main(["affinity", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--progress / --no-progress" in text and "--overwrite" in text
    assert "  steps = None" in text and "  groups = [2, 3]" in text
    assert all(f"  {key} = " in text for key in AffinitySection.model_fields)


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "x.yaml"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Missing option '--out'. (see polytask train -h)"]
    assert main(["merge", "x.yaml", "--out", "o", "--bogus"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No such option")
    assert "--bogus" in err[0] and err[0].endswith("(see polytask merge -h)")
    assert main(["nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: No such command 'nope'")


def test_no_command_prints_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: polytask [OPTIONS] COMMAND")
    assert all(f"  {command} " in out for command in _commands())
