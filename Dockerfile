# syntax=docker/dockerfile:1
#
# zonal's image: one image for every mode (`zonal controller`, `zonal node`, `zonal provisioner`, …).
#
# Users: the image runs as the unprivileged user zonal (uid/gid 65532) by default, which is all the
# controller and the provisioner need (they talk to EC2 and the Kubernetes API, nothing on the host).
# The node plugin formats and mounts block devices, so deploy/base/node.yaml runs that container as
# root with `securityContext: {privileged: true, runAsUser: 0}`; nothing else runs as root.
#
# Health: HEALTHCHECK below only proves the interpreter and the package load (`zonal --version`), for
# plain `docker run`. Kubernetes ignores it: there the livenessprobe sidecar calls the CSI Probe RPC on
# the socket and the kubelet checks its /healthz.
#
# The runtime is zonal without its `embedded` extra: no EC2 simulator, no moto, flask, sympy or cfn-lint
# (`zonal demo` and `--cloud embedded` say in one line that they need `pip install 'zonal[embedded]'`).
#
# No Docker engine in CI: tools/dockerfile-dry-run.sh runs the Python steps below (pip wheel, pip
# install of the wheel, `zonal --version`) in scratch virtualenvs and checks that the extra is absent.

# ---- builder: wheels for zonal and everything it depends on ----------------------------------------
FROM python:3.11-slim AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY provisioner ./provisioner
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# ---- runtime ------------------------------------------------------------------------------------------
FROM python:3.11-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The tools the node plugin drives: mkfs.ext4/resize2fs (e2fsprogs), mkfs.xfs/xfs_growfs (xfsprogs),
# blkid/lsblk (util-linux), mount/umount (mount), and nvme-cli to read an NVMe device's volume id.
RUN apt-get update \
    && apt-get install -y --no-install-recommends e2fsprogs xfsprogs util-linux mount nvme-cli \
    && rm -rf /var/lib/apt/lists/*
# Install from the builder's wheels only: no network, no compiler, no wheel files left in a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels zonal
RUN groupadd --system --gid 65532 zonal \
    && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin zonal
USER 65532:65532
HEALTHCHECK --interval=30s --timeout=10s --start-period=5s --retries=3 CMD ["zonal", "--version"]
ENTRYPOINT ["zonal"]
CMD ["--help"]
