#!/usr/bin/env bash
# Run the Dockerfile's Python build steps without a Docker engine, in scratch virtualenvs:
#   builder stage: its COPY lines (into a scratch source tree) and its `pip wheel` RUN line;
#   runtime stage: its `pip install` RUN line (the BuildKit --mount is replaced by the scratch wheel dir);
#   then the HEALTHCHECK command (`zonal --version`) in the runtime virtualenv;
#   then checks that the runtime is the lean one: none of the embedded extra's packages (moto, flask,
#   sympy, cfn-lint) installed, every serving command's --help works, and `zonal demo` refuses in one
#   line naming the extra.
# The commands are read from the Dockerfile itself, so a broken COPY list or pip line fails here too.
# apt-get and user creation are not run (they need the image's root filesystem).
#
# Usage: tools/dockerfile-dry-run.sh        (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d "${TMPDIR:-/tmp}/zonal-dockerfile-dry-run.XXXXXX")"
trap 'rm -rf "$work"' EXIT

"$python" - "$root" "$work" >"$work/steps.sh" <<'PY'
import json
import re
import shlex
import sys
from pathlib import Path

root, work = Path(sys.argv[1]), Path(sys.argv[2])
text = (root / "Dockerfile").read_text()
# Join continuation lines, drop comments and blank lines.
lines, current = [], ""
for raw in text.splitlines():
    stripped = raw.strip()
    if not current and (not stripped or stripped.startswith("#")):
        continue
    if stripped.endswith("\\"):
        current += stripped[:-1] + " "
        continue
    lines.append(current + stripped)
    current = ""

stages = []
for line in lines:
    instruction, _, rest = line.partition(" ")
    if instruction.upper() == "FROM":
        stages.append({"from": rest, "steps": []})
    elif stages:
        stages[-1]["steps"].append((instruction.upper(), rest.strip()))
builder = next(s for s in stages if re.search(r"\bAS\s+builder\b", s["from"], re.I))
runtime = stages[-1]

image_py = re.search(r"python:(\d+\.\d+)", runtime["from"])
local_py = f"{sys.version_info.major}.{sys.version_info.minor}"
if image_py and image_py.group(1) != local_py:
    print(f"echo 'note: the image uses Python {image_py.group(1)}, this dry run {local_py}' >&2")

out = ["set -euo pipefail", "set -x"]
src, wheels = work / "src", work / "wheels"
out.append(f"mkdir -p {shlex.quote(str(src))}")
out.append(f"{shlex.quote(sys.executable)} -m venv {shlex.quote(str(work / 'builder'))}")
out.append(f"{shlex.quote(sys.executable)} -m venv {shlex.quote(str(work / 'runtime'))}")
ran_wheel = ran_install = False
for instruction, rest in builder["steps"]:
    if instruction == "COPY" and not rest.startswith("--"):
        *sources, dest = rest.split()
        target = src / dest
        out.append(f"mkdir -p {shlex.quote(str(target if dest.endswith('/') or len(sources) > 1 else target.parent))}")
        for source in sources:
            into = target / Path(source).name if dest.endswith("/") else target
            out.append(f"cp -a {shlex.quote(str(root / source))} {shlex.quote(str(into))}")
    elif instruction == "RUN" and "pip wheel" in rest:
        # pip's cache is used here (the image build passes --no-cache-dir only to keep layers small).
        cmd = rest.replace("--no-cache-dir ", "").replace("/wheels", str(wheels))
        out.append(f"(cd {shlex.quote(str(src))} && PATH={shlex.quote(str(work / 'builder/bin'))}:$PATH {cmd})")
        ran_wheel = True
for instruction, rest in runtime["steps"]:
    if instruction == "RUN" and "pip install" in rest:
        cmd = re.sub(r"--mount=\S+\s*", "", rest).replace("--no-cache-dir ", "").replace("/wheels", str(wheels))
        out.append(f"PATH={shlex.quote(str(work / 'runtime/bin'))}:$PATH {cmd}")
        ran_install = True
    elif instruction == "HEALTHCHECK":
        probe = json.loads(rest.split("CMD", 1)[1])
        out.append(f"PATH={shlex.quote(str(work / 'runtime/bin'))}:$PATH {shlex.join(probe)}")
if not (ran_wheel and ran_install):
    sys.exit("Dockerfile: no `pip wheel` step in the builder stage or no `pip install` step in the runtime")
print("\n".join(out))
PY

bash "$work/steps.sh"

runtime="$work/runtime/bin"
leaked="$("$runtime/python" -m pip list --format=freeze | grep -iE '^(moto|flask|sympy|cfn-lint)==' || true)"
if [ -n "$leaked" ]; then
  echo "dockerfile dry run: the runtime holds the embedded extra's packages: $(echo $leaked)" >&2
  exit 1
fi
for command in controller node all provisioner csi explain translate demo; do
  "$runtime/zonal" "$command" --help >/dev/null
done
status=0
refusal="$("$runtime/zonal" demo 2>&1 >/dev/null)" || status=$?
if [ "$status" -eq 0 ] || [ "$(printf '%s\n' "$refusal" | wc -l)" -ne 1 ] \
    || [[ "$refusal" != *"pip install 'zonal[embedded]'"* ]]; then
  echo "dockerfile dry run: \`zonal demo\` without the extra (status $status) said: $refusal" >&2
  exit 1
fi
echo "runtime: $(du -sm "$work/runtime" | cut -f1) MB, no embedded extra; zonal demo says: $refusal"
echo "dockerfile dry run: ok"
