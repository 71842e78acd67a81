"""zonal: a topology-aware AWS EBS CSI driver and provisioner for Kubernetes."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("zonal")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"
