"""The Dockerfile, read as data: stages, base images, packages, the user, health check and entry point.

There is no Docker engine here; ``tools/dockerfile-dry-run.sh`` runs the Python build steps for real
(minutes, network), so this suite only checks the file's shape and that the script is well-formed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DRY_RUN = ROOT / "tools" / "dockerfile-dry-run.sh"
NODE_TOOLS = {"e2fsprogs", "xfsprogs", "util-linux", "mount", "nvme-cli"}


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [rest for ins, rest in self.steps if ins == instruction]


def parse(text: str) -> list[Stage]:
    """Stages of a Dockerfile: continuation lines joined, comments and parser directives dropped."""
    stages: list[Stage] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        instruction, _, rest = (current + line).partition(" ")
        current = ""
        if instruction.upper() == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert m, f"bad FROM {rest!r}"
            stages.append(Stage(base=m.group(1), name=m.group(2) or ""))
        else:
            assert stages, f"{instruction} before FROM"
            stages[-1].steps.append((instruction.upper(), rest.strip()))
    return stages


STAGES = parse(DOCKERFILE.read_text())
BUILDER, RUNTIME = STAGES[0], STAGES[-1]


def test_two_stages_on_python_3_11_slim() -> None:
    assert len(STAGES) == 2
    assert (BUILDER.base, BUILDER.name) == ("python:3.11-slim", "builder")
    assert RUNTIME.base == "python:3.11-slim"


def test_builder_wheels_the_project_from_what_it_copies() -> None:
    copied = [src for rest in BUILDER.args("COPY") for src in rest.split()[:-1]]
    assert {"pyproject.toml", "README.md", "provisioner"} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists(), source
    [wheel] = [r for r in BUILDER.args("RUN") if "pip wheel" in r]
    assert "--wheel-dir /wheels" in wheel and shlex.split(wheel)[-1] == "."


def test_runtime_installs_node_tools_and_only_the_built_wheels() -> None:
    [apt] = [r for r in RUNTIME.args("RUN") if "apt-get install" in r]
    words = set(shlex.split(apt.replace("&&", " ")))
    assert words >= NODE_TOOLS
    assert "rm -rf /var/lib/apt/lists/*" in apt
    [pip] = [r for r in RUNTIME.args("RUN") if "pip install" in r]
    assert "from=builder" in pip and "--no-index" in pip and "--find-links /wheels" in pip
    assert shlex.split(pip)[-1] == "zonal"  # no extra: the embedded world (moto) stays out of the image


def test_runs_as_non_root_zonal_65532_by_default() -> None:
    users = RUNTIME.args("USER")
    assert users and users[-1] == "65532:65532"
    user_run = " ".join(RUNTIME.args("RUN"))
    assert re.search(r"groupadd .*--gid 65532 zonal", user_run)
    assert re.search(r"useradd .*--uid 65532 --gid 65532 .*zonal$", user_run)
    # Nothing runs after the switch to the unprivileged user that would need root.
    after = [ins for ins, _ in RUNTIME.steps[[s[0] for s in RUNTIME.steps].index("USER") :]]
    assert "RUN" not in after


def test_health_check_and_entrypoint() -> None:
    [health] = RUNTIME.args("HEALTHCHECK")
    assert json.loads(health.split("CMD", 1)[1]) == ["zonal", "--version"]
    [entrypoint] = RUNTIME.args("ENTRYPOINT")
    assert json.loads(entrypoint) == ["zonal"]


def test_dockerignore_keeps_the_build_context_small_but_sufficient() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", "tests", ".venv", "**/__pycache__"} <= ignored
    copied = {src for rest in BUILDER.args("COPY") for src in rest.split()[:-1]}
    assert not copied & ignored


def test_dry_run_script_is_executable_bash() -> None:
    assert os.access(DRY_RUN, os.X_OK)
    result = subprocess.run(["bash", "-n", str(DRY_RUN)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    script = DRY_RUN.read_text()
    # The steps come from the Dockerfile itself, not from a copy that could drift.
    assert '(root / "Dockerfile").read_text()' in script
    assert all(word in script for word in ('"pip wheel"', '"pip install"', '"HEALTHCHECK"'))
    # The runtime it builds is checked for the embedded extra's packages.
    assert "^(moto|flask|sympy|cfn-lint)==" in script
