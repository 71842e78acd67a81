"""The import-linter contracts in pyproject.toml fail when broken.

`make layers` shows they are kept; this shows each one bites: a copy of the package gets one forbidden
import (or a module no layer names) and import-linter must report the contract it breaks as broken.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = [
    c["name"]
    for c in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
]

# (module file, line appended, contract it must break). Appended at the end: read, never run.
BREAKS = [
    ("model.py", "import provisioner.ports", "Layers:"),
    ("cli/serve.py", "import provisioner.embedded.cloud", "The embedded world is not the product"),
    ("controller/core.py", "import provisioner.metrics", "Cores import only ports and pure rules"),
    ("kube/client.py", "import provisioner.mount.linux", "Adapters do not import each other"),
    ("cli/csi.py", "import grpc", "grpc and protobuf stay in provisioner.csi"),
    ("cli/cloud.py", "import boto3", "boto3/botocore stay in provisioner.aws"),
    ("aws/client.py", "import moto", "moto and its server stay in provisioner.embedded"),
    ("cli/provision.py", "import kubernetes", "kubernetes client stays in provisioner.kube"),
    ("csi/server.py", "import subprocess", "subprocess stays in provisioner.mount"),
    ("cli/http.py", "import prometheus_client", "prometheus_client stays in provisioner.metrics"),
]


def _lint(root: Path) -> dict[str, str]:
    """Each contract's verdict (KEPT/BROKEN) when import-linter checks the package under ``root``."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "1000"}
    done = subprocess.run(
        [str(lint_imports), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    verdicts = {}
    for name in CONTRACTS:
        m = re.search(re.escape(name) + r"\s+(KEPT|BROKEN)", done.stdout)
        assert m, f"{name!r} not in the report:\n{done.stdout}\n{done.stderr}"
        verdicts[name] = m.group(1)
    return verdicts


def test_every_contract_is_named_by_a_break() -> None:
    for name in CONTRACTS:
        assert [b for b in BREAKS if name.startswith(b[2])], f"no break proves {name!r}"


@pytest.mark.parametrize(("module", "line", "contract"), BREAKS)
def test_each_contract_fails_when_broken(tmp_path: Path, module: str, line: str, contract: str) -> None:
    package = _copy(tmp_path)
    with (package / module).open("a") as f:
        f.write(f"\n{line}  # a deliberate break\n")
    [name] = [n for n in CONTRACTS if n.startswith(contract)]
    assert _lint(tmp_path)[name] == "BROKEN", f"{line!r} in {module} did not break {name!r}"


def test_a_module_no_layer_names_breaks_the_layers(tmp_path: Path) -> None:
    (_copy(tmp_path) / "stray.py").write_text('"""A module no layer names."""\n')
    [name] = [n for n in CONTRACTS if n.startswith("Layers:")]
    assert _lint(tmp_path)[name] == "BROKEN"


def test_the_unbroken_copy_keeps_every_contract(tmp_path: Path) -> None:
    _copy(tmp_path)
    assert set(_lint(tmp_path).values()) == {"KEPT"}


def _copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    package = tmp_path / "provisioner"
    shutil.copytree(ROOT / "provisioner", package, ignore=shutil.ignore_patterns("__pycache__"))
    return package
