"""Regenerate the Python CSI bindings in provisioner/csi/_proto from proto/csi.proto.

Usage (from anywhere)::

    python tools/genproto.py

This runs the equivalent of::

    python -m grpc_tools.protoc -Iprovisioner/csi/_proto=<repo>/proto \\
        -I<grpc_tools>/_proto \\
        --python_out=OUT --grpc_python_out=OUT --pyi_out=OUT \\
        --plugin=protoc-gen-mypy_grpc=<venv>/bin/protoc-gen-mypy_grpc \\
        --mypy_grpc_out=OUT <repo>/proto/csi.proto

with OUT = the repository root, so the modules land in
provisioner/csi/_proto/ and import each other as ``provisioner.csi._proto``.
The ``protoc-gen-mypy_grpc`` plugin (from mypy-protobuf) writes the typed
``csi_pb2_grpc.pyi`` stub; the grpc plugin's ``csi_pb2_grpc.py`` is untyped.

Only the standard library and grpcio-tools are imported (mypy-protobuf is run
as a protoc plugin executable). The output depends on the grpcio-tools and
mypy-protobuf versions; tests/test_proto.py checks the committed files match.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PROTO_DIR = REPO_ROOT / "proto"
PROTO_FILE = PROTO_DIR / "csi.proto"
# Import path of the generated package, relative to the output root.
PACKAGE_PATH = Path("provisioner", "csi", "_proto")

GENERATED_FILES = (
    "__init__.py",
    "csi_pb2.py",
    "csi_pb2.pyi",
    "csi_pb2_grpc.py",
    "csi_pb2_grpc.pyi",
)

INIT_TEXT = '"""Generated CSI v1.12.0 bindings: do not edit, run python tools/genproto.py."""\n'

MYPY_GRPC_PLUGIN = "protoc-gen-mypy_grpc"


def _find_mypy_grpc_plugin() -> Path:
    """Locate mypy-protobuf's grpc stub plugin (next to this interpreter or on PATH)."""
    bindir = Path(sys.executable).parent
    for name in (MYPY_GRPC_PLUGIN, MYPY_GRPC_PLUGIN + ".exe"):
        candidate = bindir / name
        if candidate.is_file():
            return candidate
    found = shutil.which(MYPY_GRPC_PLUGIN)
    if found is None:
        raise RuntimeError(
            f"{MYPY_GRPC_PLUGIN} not found next to {sys.executable} or on PATH; "
            "install mypy-protobuf in this environment"
        )
    return Path(found)


def _protoc_args(out_root: Path) -> list[str]:
    # Imported here so that `import genproto` stays cheap and stdlib-only.
    import grpc_tools

    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"
    out = str(out_root)
    return [
        "grpc_tools.protoc",  # argv[0]
        f"-I{PACKAGE_PATH.as_posix()}={PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--pyi_out={out}",
        f"--plugin=protoc-gen-mypy_grpc={_find_mypy_grpc_plugin()}",
        f"--mypy_grpc_out={out}",
        str(PROTO_FILE),
    ]


def generate(out_root: Path) -> list[Path]:
    """Compile proto/csi.proto into ``out_root/provisioner/csi/_proto``.

    Returns the generated files (including the package ``__init__.py``).
    Raises RuntimeError if protoc fails or an expected file is missing.
    """
    from grpc_tools import protoc

    out_root = Path(out_root)
    package_dir = out_root / PACKAGE_PATH
    package_dir.mkdir(parents=True, exist_ok=True)

    rc = protoc.main(_protoc_args(out_root))
    if rc != 0:
        raise RuntimeError(f"protoc failed with exit code {rc} compiling {PROTO_FILE}")

    (package_dir / "__init__.py").write_text(INIT_TEXT, encoding="utf-8")

    paths = [package_dir / name for name in GENERATED_FILES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(f"protoc did not produce: {', '.join(missing)}")
    return paths


def main() -> int:
    """Regenerate the committed bindings in place."""
    for path in generate(REPO_ROOT):
        print(path.relative_to(REPO_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
