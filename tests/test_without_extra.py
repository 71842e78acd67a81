"""`pip install zonal` without the `embedded` extra: every production module loads, every command's help
works, and the embedded commands stop with one line naming the extra.

Each check runs in a fresh interpreter whose import system refuses moto and what moto brings (a
meta-path finder raising ModuleNotFoundError, as a missing package does), so the test venv, which has
the extra, stands in for one without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc

import provisioner
from provisioner.csi._proto import csi_pb2, csi_pb2_grpc

PACKAGE = Path(provisioner.__file__).parent

# moto and the heavy packages its [ec2,server] extras bring; none of them may be needed by the runtime.
BLOCKED = ("moto", "flask", "werkzeug", "sympy", "cfnlint", "networkx", "docker", "aws_xray_sdk", "responses")

BLOCKER = f"""
import sys

BLOCKED = {BLOCKED!r}


class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, Refuse())
"""

EXTRA_HINT = "pip install 'zonal[embedded]'"


def _python(code: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + code, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=cwd,
        check=False,
    )


def _production_modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[1] == "embedded" or parts[-1] == "__main__":
            continue
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def test_every_production_module_and_every_help_loads_without_the_extra() -> None:
    modules = _production_modules()
    assert "provisioner.cli.serve" in modules and "provisioner.aws.ec2" in modules
    commands = ["controller", "node", "all", "provisioner", "csi", "explain", "translate", "demo"]
    code = """
import contextlib, importlib, io, json
from provisioner.cli import main

for name in sys.argv[1].split(","):
    importlib.import_module(name)
helps = {}
for command in [[]] + [[c] for c in sys.argv[2].split(",")]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main([*command, "--help"])
        except SystemExit as e:
            helps[" ".join(command)] = (e.code, out.getvalue())
embedded = [m for m in sys.modules if m.startswith("provisioner.embedded")]
loaded = sorted(embedded + [m for m in sys.modules if m.partition(".")[0] in BLOCKED])
print(json.dumps({"helps": helps, "loaded": loaded}))
"""
    done = _python(code, ",".join(modules), ",".join(commands))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["loaded"] == []
    assert set(result["helps"]) == {"", *commands}
    for command, (status, text) in result["helps"].items():
        assert status == 0, command
        assert text.startswith(f"usage: zonal {command}".rstrip()), text
    assert "--embedded-zones" in result["helps"]["all"][1]
    assert "--immediate" in result["helps"]["demo"][1]


def _zonal_without_extra(*args: str) -> subprocess.CompletedProcess[str]:
    return _python("from provisioner.cli import run\nsys.argv = ['zonal', *sys.argv[1:]]\nrun()", *args)


def _one_line_naming_the_extra(done: subprocess.CompletedProcess[str], what: str) -> None:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"zonal: error: {what} needs the embedded extra (moto is not installed): {EXTRA_HINT}"
    ], done.stderr
    assert done.stdout == ""


def test_demo_without_the_extra_names_it_in_one_line(tmp_path: Path) -> None:
    _one_line_naming_the_extra(_zonal_without_extra("demo", "--dir", str(tmp_path / "demo")), "zonal demo")
    assert not (tmp_path / "demo").exists()


def test_cloud_embedded_without_the_extra_names_it_in_one_line(tmp_path: Path) -> None:
    sock = tmp_path / "csi.sock"
    for mode in ("all", "controller"):
        done = _zonal_without_extra(mode, "--cloud", "embedded", "--endpoint", f"unix://{sock}")
        _one_line_naming_the_extra(done, "--cloud embedded")
    assert not sock.exists()


def test_controller_and_node_serve_the_real_cloud_without_the_extra(tmp_path: Path) -> None:
    sock = tmp_path / "csi.sock"
    args = ["all", "--cloud", "aws", "--region", "us-east-1", "--endpoint", f"unix://{sock}"]
    args += ["--node-id", "i-0abc", "--zone", "us-east-1a"]
    code = "from provisioner.cli import run\nsys.argv = ['zonal', *sys.argv[1:]]\nrun()"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    # A controller refuses to start without credentials; it makes no EC2 call here, so fake ones do.
    env |= {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", BLOCKER + code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the serving line, or "" when the process died
        assert first.startswith(f"zonal all serving unix://{sock}"), first + proc.communicate(timeout=30)[1]
        with grpc.insecure_channel(f"unix://{sock}") as ch:
            info = csi_pb2_grpc.IdentityStub(ch).GetPluginInfo(csi_pb2.GetPluginInfoRequest(), timeout=30)
            caps = csi_pb2_grpc.IdentityStub(ch).GetPluginCapabilities(
                csi_pb2.GetPluginCapabilitiesRequest(), timeout=30
            )
        assert info.name == "zonal.csi.dev"
        assert any(c.service.type == c.service.CONTROLLER_SERVICE for c in caps.capabilities)
    finally:
        # How a server stops on SIGTERM is tests/test_entry.py's subject; this one only needed it serving.
        proc.kill()
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err
