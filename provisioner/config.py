"""Settings as frozen dataclasses, built once by the CLI and passed explicitly.

This is the only place that knows defaults; nothing in the package reads ``os.environ`` except the
CLI when it fills these in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

DEFAULT_DRIVER_NAME = "zonal.csi.dev"
EBS_DRIVER_NAME = "ebs.csi.aws.com"

# CSI spec: the plugin name is at most 63 characters, begins and ends with an alphanumeric
# character, with dashes, dots and alphanumerics between (a DNS-1123 subdomain, lower case allowed).
_DRIVER_NAME_RE = re.compile(r"^[A-Za-z0-9]([-.A-Za-z0-9]{0,61}[A-Za-z0-9])?$")


def validate_driver_name(name: str) -> str:
    """Return ``name`` if the CSI spec allows it as a plugin name, else raise ``ValueError``."""
    if not _DRIVER_NAME_RE.match(name):
        raise ValueError(
            f"driver name {name!r} is not a valid CSI plugin name: at most 63 characters, "
            "alphanumerics, '-' and '.', starting and ending with an alphanumeric"
        )
    return name


@dataclass(frozen=True)
class DriverConfig:
    """Identity of this driver instance, shared by every service."""

    driver_name: str = DEFAULT_DRIVER_NAME
    vendor_version: str = "0.0.0"
    # Written into the ownership tag ``kubernetes.io/cluster/<id>=owned`` and ``ebs.csi.aws.com/cluster``.
    cluster_id: str = ""
    # Values are templates (``{{ .PVCName }}``…), as aws-ebs-csi-driver's --extra-tags.
    extra_tags: Mapping[str, str] = field(default_factory=dict)
    # aws-ebs-csi-driver's --k8s-tag-cluster-id: the in-tree plugin's tags (Name, KubernetesCluster…).
    k8s_tag_cluster_id: str = ""


@dataclass(frozen=True)
class ServerConfig:
    """The gRPC endpoint and its concurrency."""

    endpoint: str = "unix:///csi/csi.sock"
    mode: str = "all"  # controller | node | all
    # The sidecars send up to 100 concurrent calls that each may wait tens of seconds on EC2; leave
    # headroom so cheap calls (Probe, NodeGetInfo) never queue behind them.
    max_workers: int = 256
    grace_seconds: float = 10.0
    socket_mode: int = 0o660


@dataclass(frozen=True)
class CloudConfig:
    """How to reach EC2."""

    kind: str = "aws"  # aws | embedded
    region: str = ""
    endpoint_url: str = ""
    retry_mode: str = "adaptive"  # standard | adaptive
    max_attempts: int = 5
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    # Concurrent DescribeVolumes/DescribeInstances lookups share one call (provisioner.aws.batcher).
    batching: bool = True
    batch_window: float = 0.03
    # Where the client-side limiter (retry mode adaptive) starts: EC2's documented buckets, size and rate,
    # times this. A starting point, not a ceiling: the limiter finds the account's real rate from there.
    rate_scale: float = 1.0


@dataclass(frozen=True)
class ControllerConfig:
    """Behaviour of the controller service."""

    default_zone: str = ""
    allow_foreign_volume_delete: bool = False
    # First poll after about a second (median creation ≈ 1.5 s), then exponential backoff.
    wait_initial_delay: float = 1.0
    wait_factor: float = 1.6
    wait_max_delay: float = 8.0
    # The waits for a new volume's `available` check when earlier volumes of its kind were ready
    # (provisioner.controller.pacing), around the backoff above; False: the backoff alone.
    learned_waits: bool = True
    # Used when a call carries no deadline of its own.
    default_wait_timeout: float = 300.0
    attach_timeout: float = 90.0
    probe_cache_seconds: float = 60.0
    # ValidateVolumeCapabilities reuses a volume read from EC2 for this long (0: read every time).
    validate_cache_seconds: float = 5.0
    # IdempotentParameterMismatch with no volume of that name visible: EC2 may still be making the
    # earlier request's volume visible (Describe is eventually consistent). Only after this long is the
    # token treated as belonging to a deleted volume and replaced; before, the call answers ABORTED.
    # Also how long a volume EC2 has just made may be missing from DescribeVolumes before the wait for
    # its `available` takes NotFound for an answer.
    token_mismatch_grace: float = 30.0
    # Look the name up (DescribeVolumes by tag) before every CreateVolume. Off: EC2's ClientToken makes
    # retries idempotent, and the name is looked up only on IdempotentParameterMismatch. On: a volume of
    # this name made by another token (another tool, an expired token) is found too.
    lookup_before_create: bool = False
    # ControllerExpandVolume / ControllerModifyVolume requests for one volume arriving within this
    # many seconds are merged into one EC2 ModifyVolume (EC2 allows one modification at a time).
    modify_merge_window: float = 2.0
    # EC2's documented wait between modifications of one volume, used to say when to retry.
    modify_cooldown: float = 6 * 3600.0
