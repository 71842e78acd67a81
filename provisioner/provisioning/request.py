"""Claim + StorageClass → CSI CreateVolume request, as the external-provisioner prepares it.

Why it exists: the request must be identical to the sidecar's (name, capacity, one capability per access
mode, reserved ``csi.storage.k8s.io/`` parameters consumed, secrets resolved from templates, data sources)
so either provisioner can take over a claim. It reads Secrets, PVs and VolumeSnapshots through the
KubeApi port; it never calls the driver and never writes to the cluster.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound
from provisioner.model import AccessMode, AccessType, CapacityRange, ContentSource, VolumeCapability
from provisioner.ports.csi import ControllerCapability, CreateVolumeRequest
from provisioner.ports.kube import Kind, KubeApi, KubeError, KubeNotFound, Obj
from provisioner.provisioning.quantity import parse_quantity
from provisioner.provisioning.settings import ProvisionerConfig

PREFIX = "csi.storage.k8s.io/"
FSTYPE_KEY = PREFIX + "fstype"
PVC_NAME_KEY = PREFIX + "pvc/name"
PVC_NAMESPACE_KEY = PREFIX + "pvc/namespace"
PV_NAME_KEY = PREFIX + "pv/name"


@dataclass(frozen=True)
class SecretParams:
    """Where one secret reference lives in the class parameters (current and deprecated keys)."""

    name: str
    name_key: str
    namespace_key: str
    deprecated_name_key: str = ""
    deprecated_namespace_key: str = ""


DEFAULT_SECRET = SecretParams("Default", PREFIX + "secret-name", PREFIX + "secret-namespace")
PROVISIONER_SECRET = SecretParams(
    "Provisioner",
    PREFIX + "provisioner-secret-name",
    PREFIX + "provisioner-secret-namespace",
    "csiProvisionerSecretName",
    "csiProvisionerSecretNamespace",
)
# PV field → where its reference is configured.
PV_SECRETS: dict[str, SecretParams] = {
    "controllerPublishSecretRef": SecretParams(
        "ControllerPublish",
        PREFIX + "controller-publish-secret-name",
        PREFIX + "controller-publish-secret-namespace",
        "csiControllerPublishSecretName",
        "csiControllerPublishSecretNamespace",
    ),
    "nodeStageSecretRef": SecretParams(
        "NodeStage",
        PREFIX + "node-stage-secret-name",
        PREFIX + "node-stage-secret-namespace",
        "csiNodeStageSecretName",
        "csiNodeStageSecretNamespace",
    ),
    "nodePublishSecretRef": SecretParams(
        "NodePublish",
        PREFIX + "node-publish-secret-name",
        PREFIX + "node-publish-secret-namespace",
        "csiNodePublishSecretName",
        "csiNodePublishSecretNamespace",
    ),
    "controllerExpandSecretRef": SecretParams(
        "ControllerExpand",
        PREFIX + "controller-expand-secret-name",
        PREFIX + "controller-expand-secret-namespace",
    ),
    "nodeExpandSecretRef": SecretParams(
        "NodeExpand", PREFIX + "node-expand-secret-name", PREFIX + "node-expand-secret-namespace"
    ),
}
KNOWN_RESERVED = {FSTYPE_KEY} | {
    k
    for p in (DEFAULT_SECRET, PROVISIONER_SECRET, *PV_SECRETS.values())
    for k in (p.name_key, p.namespace_key)
}


class ExternalPopulator(Exception):
    """The claim's data source is neither a PVC nor a VolumeSnapshot: another controller fills it."""


class SnapshotApiMissing(FailedPrecondition):
    """The claim restores a VolumeSnapshot but the API server does not serve snapshot.storage.k8s.io."""


@dataclass(frozen=True)
class Prepared:
    """A CreateVolume request plus what the PV will need from the preparation."""

    request: CreateVolumeRequest
    pv_name: str
    fs_type: str
    block: bool
    pv_secret_refs: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    deletion_secret: tuple[str, str] = ("", "")


def annotations_of(obj: Obj) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("annotations") or {})


def make_volume_name(prefix: str, uid: str, uuid_length: int) -> str:
    """``<prefix>-<claim uid>``; with a length ≥ 0 the UID loses its dashes and is truncated."""
    if not prefix:
        raise InvalidArgument("volume name prefix cannot be empty")
    if not uid:
        raise InvalidArgument("corrupted claim: it has no UID")
    if uuid_length == -1:
        return f"{prefix}-{uid}"
    return f"{prefix}-{uid.replace('-', '')[:uuid_length]}"


def csi_access_mode(mode: str, single_node_multi_writer: bool) -> AccessMode:
    """Kubernetes access mode → CSI mode, as csi-lib-utils' ``ToCSIAccessMode`` maps it."""
    table = {
        "ReadWriteOnce": AccessMode.SINGLE_NODE_MULTI_WRITER
        if single_node_multi_writer
        else AccessMode.SINGLE_NODE_WRITER,
        "ReadWriteOncePod": AccessMode.SINGLE_NODE_SINGLE_WRITER
        if single_node_multi_writer
        else AccessMode.SINGLE_NODE_WRITER,
        "ReadOnlyMany": AccessMode.MULTI_NODE_READER_ONLY,
        "ReadWriteMany": AccessMode.MULTI_NODE_MULTI_WRITER,
    }
    if mode not in table:
        raise InvalidArgument(f"unknown access mode {mode!r}")
    return table[mode]


def remove_reserved(params: Mapping[str, str]) -> dict[str, str]:
    """Class parameters without the reserved keys the provisioner consumes; unknown reserved keys fail."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if key.startswith(PREFIX):
            if key not in KNOWN_RESERVED:
                raise InvalidArgument(f'found unknown parameter key "{key}" with reserved namespace {PREFIX}')
            continue
        out[key] = value
    return out


def _templates(params: Mapping[str, str], sp: SecretParams) -> tuple[str, str]:
    names = [params[k] for k in (sp.deprecated_name_key, sp.name_key) if k and k in params]
    namespaces = [params[k] for k in (sp.deprecated_namespace_key, sp.namespace_key) if k and k in params]
    if len(names) > 1 or len(namespaces) > 1:
        raise InvalidArgument(
            f'{sp.name} secrets specified in parameters with both "csi" and "{PREFIX}" keys'
        )
    if len(names) != len(namespaces):
        raise InvalidArgument(
            f"either name and namespace for {sp.name} secrets specified, both must be specified"
        )
    if not names:
        return "", ""
    if not names[0] or not namespaces[0]:
        raise InvalidArgument(f"{sp.name} secrets specified in parameters but name or namespace is empty")
    return names[0], namespaces[0]


_TOKEN = re.compile(r"\$\{([^}]*)\}")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _resolve(template: str, values: Mapping[str, str]) -> str:
    missing = sorted({t for t in _TOKEN.findall(template) if t not in values})
    if missing:
        raise InvalidArgument(f"error resolving value {template!r}: invalid tokens {missing}")
    return _TOKEN.sub(lambda m: values[m.group(1)], template)


def secret_reference(
    sp: SecretParams,
    params: Mapping[str, str],
    pv_name: str,
    claim: Obj | None,
    with_annotations: bool = True,
) -> tuple[str, str] | None:
    """(namespace, name) of the secret the class configures for ``sp``, templates resolved."""
    name_t, ns_t = _templates(params, sp)
    if not name_t and not ns_t:
        name_t, ns_t = _templates(params, DEFAULT_SECRET)
    if not name_t and not ns_t:
        return None
    meta: dict[str, Any] = (claim or {}).get("metadata", {})
    ns_values = {"pv.name": pv_name}
    name_values = {"pv.name": pv_name}
    if claim is not None:
        ns_values["pvc.namespace"] = meta.get("namespace", "")
        name_values["pvc.name"] = meta.get("name", "")
        name_values["pvc.namespace"] = meta.get("namespace", "")
        if with_annotations:
            for k, v in annotations_of(claim).items():
                name_values[f"pvc.annotations['{k}']"] = v
    namespace = _resolve(ns_t, ns_values)
    if not _DNS_LABEL.match(namespace):
        raise InvalidArgument(f"{ns_t!r} resolved to {namespace!r} which is not a valid namespace name")
    name = _resolve(name_t, name_values)
    if not _DNS_SUBDOMAIN.match(name):
        raise InvalidArgument(f"{name_t!r} resolved to {name!r} which is not a valid secret name")
    return namespace, name


def read_secret(kube: KubeApi, namespace: str, name: str) -> dict[str, str]:
    try:
        secret = kube.get(Kind.SECRET, name, namespace)
    except KubeNotFound as e:
        raise FailedPrecondition(f"error getting secret {name} in namespace {namespace}: not found") from e
    data = secret.get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def _fs_type(params: Mapping[str, str], default: str) -> str:
    found = [v for k, v in params.items() if k.lower() == "fstype" or k == FSTYPE_KEY]
    if len(found) > 1:
        raise InvalidArgument(f'fstype specified in parameters with both "fstype" and "{FSTYPE_KEY}" keys')
    return (found[0] if found else "") or default


def _content_source(
    kube: KubeApi, claim: Obj, driver: str, caps: frozenset[ControllerCapability]
) -> ContentSource | None:
    spec = claim.get("spec", {})
    source = spec.get("dataSourceRef") or spec.get("dataSource")
    if not source:
        return None
    kind, name = source.get("kind", ""), source.get("name", "")
    group = source.get("apiGroup") or ""
    namespace = claim["metadata"].get("namespace", "")
    if not name:
        raise InvalidArgument(f"the data source of claim {claim['metadata'].get('name')} has no name")
    if kind == "PersistentVolumeClaim" and not group:
        if ControllerCapability.CLONE_VOLUME not in caps:
            raise InvalidArgument(
                "CSI driver does not support clone operations: CLONE_VOLUME is not reported"
            )
        return _clone_source(kube, claim, namespace, name, driver)
    if kind == "VolumeSnapshot" and group == "snapshot.storage.k8s.io":
        if ControllerCapability.CREATE_DELETE_SNAPSHOT not in caps:
            raise InvalidArgument(
                "CSI driver does not support snapshot restore: CREATE_DELETE_SNAPSHOT missing"
            )
        return _snapshot_source(kube, claim, namespace, name, driver)
    raise ExternalPopulator(f"data source ({kind}) is not handled by the provisioner")


def _clone_source(kube: KubeApi, claim: Obj, namespace: str, name: str, driver: str) -> ContentSource:
    try:
        src = kube.get(Kind.CLAIM, name, namespace)
    except KubeNotFound as e:
        raise NotFound(f"source claim {namespace}/{name} not found") from e
    if src.get("status", {}).get("phase") != "Bound" or not src.get("spec", {}).get("volumeName"):
        raise FailedPrecondition(f"the PVC DataSource {name} must have a status of Bound")
    if src["metadata"].get("deletionTimestamp"):
        raise FailedPrecondition(f"the PVC DataSource {name} is currently being deleted")
    want = parse_quantity(claim["spec"].get("resources", {}).get("requests", {}).get("storage", "0"))
    have = parse_quantity(src["spec"].get("resources", {}).get("requests", {}).get("storage", "0"))
    if want < have:
        raise InvalidArgument(
            f"the new claim must be at least as large as source claim {name} ({have} bytes)"
        )
    try:
        pv = kube.get(Kind.PV, src["spec"]["volumeName"])
    except KubeNotFound as e:
        raise FailedPrecondition("claim in dataSource not bound or invalid") from e
    csi = pv.get("spec", {}).get("csi") or {}
    if csi.get("driver") != driver:
        raise FailedPrecondition("claim in dataSource not bound or invalid")
    return ContentSource(volume_id=csi.get("volumeHandle", ""))


def _snapshot_source(kube: KubeApi, claim: Obj, namespace: str, name: str, driver: str) -> ContentSource:
    try:
        snap = kube.get(Kind.VOLUME_SNAPSHOT, name, namespace)
    except KubeNotFound as e:
        if not _snapshot_api_served(kube, namespace):
            raise SnapshotApiMissing(
                f"cannot restore snapshot {namespace}/{name}: the VolumeSnapshot API "
                f"({Kind.VOLUME_SNAPSHOT.api_version}) is not served; install the snapshot CRDs "
                "and the snapshot controller"
            ) from e
        raise NotFound(f"snapshot {namespace}/{name} not found") from e
    if snap["metadata"].get("deletionTimestamp"):
        raise FailedPrecondition(f"snapshot {name} is currently being deleted")
    status = snap.get("status") or {}
    content_name = status.get("boundVolumeSnapshotContentName")
    if not content_name:
        raise FailedPrecondition(f"snapshot {name} not bound")
    try:
        content = kube.get(Kind.VOLUME_SNAPSHOT_CONTENT, content_name)
    except KubeNotFound as e:
        raise FailedPrecondition(f"snapshot {name} not bound") from e
    if content.get("spec", {}).get("driver") != driver:
        raise FailedPrecondition(f"snapshot {name} not bound")
    if not status.get("readyToUse"):
        raise FailedPrecondition(f"snapshot {name} is not Ready")
    handle = (content.get("status") or {}).get("snapshotHandle")
    if not handle:
        raise FailedPrecondition(f"snapshot handle {name} is not available")
    restore = status.get("restoreSize")
    want = parse_quantity(claim["spec"].get("resources", {}).get("requests", {}).get("storage", "0"))
    if restore and want < parse_quantity(str(restore)):
        raise InvalidArgument(f"requested volume size {want} is less than the size of snapshot {name}")
    return ContentSource(snapshot_id=handle)


def _snapshot_api_served(kube: KubeApi, namespace: str) -> bool:
    """A 404 on get means either "no such snapshot" or "no such API"; a 404 on list means the latter."""
    try:
        kube.list(Kind.VOLUME_SNAPSHOT, namespace)
    except KubeNotFound:
        return False
    except KubeError:
        return True  # cannot tell (forbidden, unavailable): keep the plain not-found answer
    return True


def clone_source_name(claim: Obj) -> str:
    """The name of the claim this claim clones ("" when its data source is not a PVC)."""
    spec = claim.get("spec") or {}
    source = spec.get("dataSourceRef") or spec.get("dataSource") or {}
    if source.get("kind") == "PersistentVolumeClaim" and not source.get("apiGroup"):
        return str(source.get("name") or "")
    return ""


def deletion_secret_reference(pv: Obj, storage_class: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the provisioner secret for a PV without deletion-secret annotations.

    Sidecar (getSecretsFromSC): the claim is gone, so the templates see a claim made only of the PV's
    claimRef name and namespace (no annotations); a PV without claimRef is deleted without secrets.
    """
    ref = (pv.get("spec") or {}).get("claimRef") or {}
    if not ref:
        return None
    params = {str(k): str(v) for k, v in (storage_class.get("parameters") or {}).items()}
    stub: Obj = {"metadata": {"name": ref.get("name", ""), "namespace": ref.get("namespace", "")}}
    return secret_reference(PROVISIONER_SECRET, params, pv["metadata"]["name"], stub, with_annotations=False)


def prepare(
    kube: KubeApi,
    claim: Obj,
    storage_class: Obj,
    config: ProvisionerConfig,
    driver: str,
    controller_caps: frozenset[ControllerCapability],
) -> Prepared:
    """Build the CreateVolume request (without accessibility requirements) and the PV's inputs."""
    spec = claim.get("spec", {})
    if spec.get("selector"):
        raise InvalidArgument("claim Selector is not supported")
    source = _content_source(kube, claim, driver, controller_caps)
    pv_name = make_volume_name(
        config.volume_name_prefix, claim["metadata"].get("uid", ""), config.volume_name_uuid_length
    )
    params: dict[str, str] = {str(k): str(v) for k, v in (storage_class.get("parameters") or {}).items()}
    fs_type = _fs_type(params, config.default_fstype)
    block = spec.get("volumeMode") == "Block"
    snmw = ControllerCapability.SINGLE_NODE_MULTI_WRITER in controller_caps
    mount_options = tuple(storage_class.get("mountOptions") or ())
    caps = tuple(
        VolumeCapability(AccessType.BLOCK, csi_access_mode(m, snmw))
        if block
        else VolumeCapability(
            AccessType.MOUNT, csi_access_mode(m, snmw), fs_type=fs_type, mount_flags=mount_options
        )
        for m in spec.get("accessModes") or ()
    )
    required = parse_quantity(str((spec.get("resources") or {}).get("requests", {}).get("storage", "0")))

    # The provisioner secret templates see only the claim's name and namespace, never its annotations.
    prov_ref = secret_reference(PROVISIONER_SECRET, params, pv_name, claim, with_annotations=False)
    secrets = read_secret(kube, *prov_ref) if prov_ref else {}
    pv_refs: dict[str, dict[str, str]] = {}
    for field_name, sp in PV_SECRETS.items():
        ref = secret_reference(sp, params, pv_name, claim)
        if ref:
            pv_refs[field_name] = {"namespace": ref[0], "name": ref[1]}

    parameters = remove_reserved(params)
    if config.extra_create_metadata:
        parameters[PVC_NAME_KEY] = claim["metadata"].get("name", "")
        parameters[PVC_NAMESPACE_KEY] = claim["metadata"].get("namespace", "")
        parameters[PV_NAME_KEY] = pv_name
    request = CreateVolumeRequest(
        name=pv_name,
        capacity=CapacityRange(required_bytes=required),
        capabilities=caps,
        parameters=parameters,
        secrets=secrets,
        content_source=source,
    )
    return Prepared(
        request=request,
        pv_name=pv_name,
        fs_type=fs_type,
        block=block,
        pv_secret_refs=pv_refs,
        deletion_secret=(prov_ref[1], prov_ref[0]) if prov_ref else ("", ""),
    )
