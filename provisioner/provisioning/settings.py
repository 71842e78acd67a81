"""ProvisionerConfig: every flag of ``zonal provisioner`` as one frozen value, built by the CLI.

It holds settings only; it must not read the environment or open connections.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provisioner.topology.requirements import RequirementFixes

FINALIZER = "external-provisioner.volume.kubernetes.io/finalizer"
ANN_STORAGE_PROVISIONER = "volume.kubernetes.io/storage-provisioner"
ANN_BETA_STORAGE_PROVISIONER = "volume.beta.kubernetes.io/storage-provisioner"
ANN_SELECTED_NODE = "volume.kubernetes.io/selected-node"
ANN_PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
# The accessibility requirements CreateVolume was sent, recorded on the PV so `zonal explain` can show
# what was really sent (zonal's own; the sidecar records nothing).
ANN_REQUIREMENTS = "zonal.dev/accessibility-requirements"
ANN_DELETION_SECRET_NAME = "volume.kubernetes.io/provisioner-deletion-secret-name"
ANN_DELETION_SECRET_NAMESPACE = "volume.kubernetes.io/provisioner-deletion-secret-namespace"
PROVISIONER_ID_KEY = "storage.kubernetes.io/csiProvisionerIdentity"


@dataclass(frozen=True)
class ProvisionerConfig:
    """Flags of the sidecar with the same names and defaults, plus zonal's fixes (on by default)."""

    csi_address: str = "unix:///csi/csi.sock"
    kubeconfig: str = ""
    worker_threads: int = 100
    retry_interval_start: float = 1.0
    retry_interval_max: float = 300.0
    strict_topology: bool = False
    immediate_topology: bool = True
    volume_name_prefix: str = "pvc"
    volume_name_uuid_length: int = -1  # -1: the whole claim UID, dashes kept
    extra_create_metadata: bool = False
    timeout: float = 10.0  # per CSI call
    default_fstype: str = ""
    pv_zone_labels: bool = False
    controller_publish_read_only: bool = False
    # Operations.
    leader_election: bool = False
    leader_election_namespace: str = "default"
    leader_election_lease_duration: float = 15.0
    leader_election_renew_deadline: float = 10.0
    leader_election_retry_period: float = 5.0
    identity: str = ""  # this replica's name in the Lease; the CLI fills in hostname + random suffix
    kube_api_qps: float = 5.0
    kube_api_burst: int = 10
    http_endpoint: str = ""
    watch_timeout: float = 300.0
    # Fixes over the sidecar.
    fixes: RequirementFixes = field(default_factory=RequirementFixes)
    validate_answer: bool = True  # wrong-zone answer → delete the volume, warn on the claim
    drop_cache_on_claim_delete: bool = True
