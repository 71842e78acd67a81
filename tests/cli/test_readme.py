"""The README's commands work as printed (issue #13): every ``zonal`` command in its shell blocks
parses with the real CLI, nothing relies on sudo keeping the virtualenv on PATH, and it says how to put
zonal on PATH and how to stop what it starts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from provisioner.cli import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"
PLACEHOLDERS = {
    "$S": "unix:///tmp/zonal/csi.sock",
    "$VOL": "vol-0123",
    "$NODE": "i-0123",
    "NS/NAME": "ns/name",
}


def shell_lines() -> list[str]:
    text = README.read_text()
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        joined = block.replace("\\\n", " ")
        lines += [line.strip() for line in joined.splitlines() if line.strip()]
    return lines


def zonal_commands() -> list[str]:
    found = []
    for line in shell_lines():
        for inner in re.findall(r"\$\((zonal [^|)]*)", line):
            found.append(inner)
        command = line.split(" #", 1)[0].strip().rstrip("&").strip()
        command = re.sub(r"^(sudo )?(\.venv/bin/)?(?=zonal )", "", command)
        if command.startswith("zonal "):
            found.append(command)
    return found


COMMANDS = zonal_commands()


def test_the_readme_has_commands_to_check() -> None:
    assert len(COMMANDS) >= 15


@pytest.mark.parametrize("command", COMMANDS)
def test_each_zonal_command_parses_as_printed(command: str) -> None:
    command = re.sub(r"\s*\[[^\]]*\]", "", command)  # a synopsis: its [optional] parts left out
    for name, value in PLACEHOLDERS.items():
        command = command.replace(name, value)
    argv = shlex.split(command)[1:]
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"`{command}` does not parse (exit {e.code})")


def test_nothing_relies_on_sudo_keeping_the_virtualenv_on_path() -> None:
    for line in shell_lines():
        if line.startswith("sudo "):
            assert line.startswith(("sudo .venv/bin/zonal ", "sudo -s")), line


def test_it_says_how_to_put_zonal_on_path_and_how_to_stop_what_it_starts() -> None:
    text = README.read_text()
    assert ". .venv/bin/activate" in text
    lines = shell_lines()
    started = [line for line in lines if line.startswith("zonal all") and line.endswith("&")]
    assert started and "ZONAL=$!" in lines[lines.index(started[0]) + 1]
    assert any(line.startswith("kill $ZONAL") for line in lines)
    assert "Ctrl-C" in text
