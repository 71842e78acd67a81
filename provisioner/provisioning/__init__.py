"""The provisioner loop: claims in, zone-correct PersistentVolumes out (over ports only).

Layout: :mod:`.settings` (ProvisionerConfig), :mod:`.quantity` (resource quantities), :mod:`.request`
(claim + class → CreateVolume request), :mod:`.pv` (answer → PersistentVolume), :mod:`.core`
(ProvisionerCore: one claim or one PV at a time, the error → next-step table), :mod:`.workqueue`
(per-item exponential backoff, N workers), :mod:`.informer` (list, watch, re-list on 410),
:mod:`.leader` (Lease-based leader election) and :mod:`.loop` (wires them together).

Nothing in this package imports the Kubernetes client or grpc: it talks to
:class:`provisioner.ports.kube.KubeApi` and :class:`provisioner.ports.kube.CsiClient`.
"""

from __future__ import annotations

from provisioner.provisioning.settings import ProvisionerConfig

__all__ = ["ProvisionerConfig"]
