"""In-tree ``kubernetes.io/aws-ebs`` objects ↔ their CSI equivalents for zonal.

Why it exists: clusters that grew up with the in-tree EBS plugin carry PersistentVolumes whose zone
lives in ``failure-domain.beta.kubernetes.io/zone`` labels (the PersistentVolumeLabel admission era,
sometimes ``__``-joined multi-zone values) and StorageClasses with ``zone``/``zones`` parameters. This
module rewrites them for zonal following the rules of Kubernetes' csi-translation-lib
(``plugins/aws_ebs.go`` and ``plugins/in_tree_volume.go``), so the result is what CSI migration itself
would produce, except for the topology key and two documented additions below.

What it must not do: I/O, logging, or talking to a cluster. Dicts (API-shaped, as parsed from YAML) in,
new dicts out; the input is never mutated. Bad input raises :class:`TranslationError` with a message
that names the offending field.

Topology key. csi-translation-lib writes ``topology.ebs.csi.aws.com/zone`` because that is the only key
aws-ebs-csi-driver used to report. zonal's NodeGetInfo reports both ``topology.kubernetes.io/zone`` and
``topology.ebs.csi.aws.com/zone``, and its CreateVolume answers with ``topology.kubernetes.io/zone``
alone; we translate to ``topology.kubernetes.io/zone`` so that (1) a translated PV has exactly the
nodeAffinity of a PV zonal provisions itself, (2) the affinity matches the well-known label every node
carries from the cloud provider, even on a node whose CSINode has not registered yet, and (3) the key
survives a later switch of CSI driver. The reverse direction accepts either key.

Rules implemented (in-tree → CSI):

* PV source: ``awsElasticBlockStore`` → ``csi`` with the driver name, ``volumeHandle`` from
  ``volumeID`` (``aws://<zone>/vol-…``, ``aws:///vol-…`` or a bare ``vol-…``), ``fsType``, ``readOnly``
  and ``volumeAttributes.partition`` (always set, ``"0"`` when absent, as the lib does).
* PV topology: the zone key is the GA one if nodeAffinity or labels use it, else the beta one
  (nodeAffinity first, then labels). Zone expressions already in nodeAffinity get the CSI key; without
  them the zone label (split on ``__``, trimmed, de-duplicated, sorted) becomes an ``In`` expression
  added to every nodeSelectorTerm. A beta region expression in nodeAffinity becomes
  ``topology.kubernetes.io/region``. Labels are kept as they are.
* StorageClass: provisioner → driver name; ``fstype`` (any case) → ``csi.storage.k8s.io/fstype``;
  ``zone``/``zones`` (comma separated) → one allowedTopologies term on the CSI key; other parameters
  (``type``, ``iopsPerGB``, ``encrypted``, ``kmsKeyId``…) kept unchanged, since zonal reads them under the
  same names; zone expressions of allowedTopologies (beta or GA key) → the CSI key, other keys kept;
  ``zone``/``zones`` together with allowedTopologies is an error.

Rules implemented (CSI → in-tree, for rollback and round trips):

* PV source: ``csi`` → ``awsElasticBlockStore`` (``volumeID`` = handle, ``fsType``, ``readOnly``,
  ``partition`` parsed from ``volumeAttributes``); CSI zone keys → the PV's zone label key; each
  nodeSelectorTerm without a region expression gets one derived from its zones (all zones of a term
  must share a region); zone and region labels added when missing (zones ``__``-joined).
* StorageClass (not in the lib, which has no such direction): provisioner → ``kubernetes.io/aws-ebs``;
  ``csi.storage.k8s.io/fstype`` → ``fsType``; parameters the in-tree plugin does not know are an error
  (it would reject them at provisioning time); allowedTopologies keep ``topology.kubernetes.io/zone``,
  which the in-tree plugin understands.

zonal's additions, beyond the lib:

* A PV with neither zone labels nor zone affinity, whose ``volumeID`` is ``aws://<zone>/vol-…``, gets
  its zone from the URL: without it the CSI PV would be schedulable in every zone and attach would fail.
* ``pv.kubernetes.io/provisioned-by: kubernetes.io/aws-ebs`` becomes the driver name (and back), so
  the CSI provisioner deletes the volume when the reclaim policy says so.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from provisioner.config import DEFAULT_DRIVER_NAME, EBS_DRIVER_NAME
from provisioner.errors import InvalidArgument
from provisioner.model import EBS_ZONE_KEY, LEGACY_ZONE_KEY, ZONE_KEY

IN_TREE_PROVISIONER = "kubernetes.io/aws-ebs"
REGION_KEY = "topology.kubernetes.io/region"
LEGACY_REGION_KEY = "failure-domain.beta.kubernetes.io/region"
# The key translated objects use; see the module docstring for why it is not topology.ebs.csi.aws.com/zone.
CSI_ZONE_KEY = ZONE_KEY
# Zone keys a CSI object may carry that mean "this EBS zone".
CSI_ZONE_KEYS = (ZONE_KEY, EBS_ZONE_KEY)
MULTI_ZONE_DELIMITER = "__"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
PARTITION_ATTRIBUTE = "partition"

PARAM_FS_TYPE = "csi.storage.k8s.io/fstype"
IN_TREE_FS_TYPE = "fsType"
# StorageClass parameters the in-tree plugin accepts (lower case; it matched them case-insensitively).
IN_TREE_PARAMS = frozenset(
    {"type", "zone", "zones", "iopspergb", "allowautoiopspergbincrease", "encrypted", "kmskeyid", "fstype"}
)

_EBS_VOLUME_ID_RE = re.compile(r"^vol-[^/]*$")


class TranslationError(InvalidArgument):
    """The object cannot be translated; the message names the field."""


# ---------------------------------------------------------------------------------------------------
# Volume ids and zones


def ebs_volume_id(kubernetes_id: str) -> str:
    """The EBS volume id in an in-tree ``volumeID``: ``aws://zone/vol-…``, ``aws:///vol-…`` or ``vol-…``."""
    if not kubernetes_id:
        raise TranslationError("spec.awsElasticBlockStore.volumeID is empty")
    if not kubernetes_id.startswith("aws://"):
        # csi-translation-lib: anything without the aws:// scheme is taken as a bare EBS id.
        return kubernetes_id
    path = kubernetes_id[len("aws://") :].partition("/")[2].strip("/")
    if not _EBS_VOLUME_ID_RE.match(path):
        raise TranslationError(f"invalid AWS volume id {kubernetes_id!r}: expected aws://<zone>/vol-…")
    return path


def zone_from_volume_id(kubernetes_id: str) -> str:
    """The zone in ``aws://<zone>/vol-…``, or ``""`` when the id does not carry one."""
    if not kubernetes_id.startswith("aws://"):
        return ""
    return kubernetes_id[len("aws://") :].partition("/")[0]


def region_from_zones(zones: Sequence[str]) -> str:
    """The one region of ``zones``: ``us-west-2a``, ``us-gov-east-1a``, local zones
    (``us-west-2-lax-1a``) and Wavelength zones (``us-east-1-wl1-bos-wlz-1``), as csi-translation-lib
    parses them. Raises TranslationError for no zones, an unknown form, or zones of several regions."""
    if not zones:
        raise TranslationError("cannot derive a region: no zones")
    regions: set[str] = set()
    for zone in zones:
        parts = zone.split("-")
        if len(parts) in (3, 4) and len(parts[-1]) == 2:
            regions.add("-".join([*parts[:-1], parts[-1][:1]]))
        elif len(parts) in (5, 7):
            regions.add("-".join(parts[:3]))
        else:
            raise TranslationError(f"{zone!r} is not an AWS availability zone")
    if len(regions) != 1:
        raise TranslationError(f"zones {sorted(zones)} span several regions: {sorted(regions)}")
    return regions.pop()


def split_zones(value: str, delimiter: str) -> list[str]:
    """Trimmed, non-empty, de-duplicated zones of a joined value, sorted (the lib's addTopology order)."""
    return sorted({z.strip() for z in value.split(delimiter) if z.strip()})


# ---------------------------------------------------------------------------------------------------
# Shape checks


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TranslationError(f"{where} must be a mapping")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise TranslationError(f"{where} must be a list")
    return value


def _string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise TranslationError(f"{where} must be a string")
    return value


def _object(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """A deep copy of ``obj`` after checking it is a ``kind``."""
    if not isinstance(obj, Mapping):
        raise TranslationError(f"expected a {kind} object, got {type(obj).__name__}")
    found = obj.get("kind")
    if found != kind:
        raise TranslationError(f"expected kind {kind}, got {found!r}")
    return copy.deepcopy(dict(obj))


def _metadata_map(obj: dict[str, Any], field: str) -> dict[str, Any]:
    """``metadata.<field>`` (labels/annotations), created when missing."""
    meta = obj.get("metadata")
    if meta is None:
        meta = obj["metadata"] = {}
    meta = _mapping(meta, "metadata")
    value = meta.get(field)
    if value is None:
        value = meta[field] = {}
    return _mapping(value, f"metadata.{field}")


def _labels(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata") or {}
    return _mapping(_mapping(meta, "metadata").get("labels") or {}, "metadata.labels")


# ---------------------------------------------------------------------------------------------------
# PV nodeAffinity helpers (terms are OR-ed, expressions within a term AND-ed)


def _terms(pv: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The PV's nodeSelectorTerms (checked for shape), or [] when it has none."""
    spec = _mapping(pv.get("spec"), "spec")
    affinity = spec.get("nodeAffinity")
    if affinity is None:
        return []
    required = _mapping(affinity, "spec.nodeAffinity").get("required")
    if required is None:
        return []
    where = "spec.nodeAffinity.required.nodeSelectorTerms"
    terms = _list(_mapping(required, "spec.nodeAffinity.required").get("nodeSelectorTerms") or [], where)
    for i, term in enumerate(terms):
        exprs = _mapping(term, f"{where}[{i}]").get("matchExpressions") or []
        for j, expr in enumerate(_list(exprs, f"{where}[{i}].matchExpressions")):
            _string(_mapping(expr, f"{where}[{i}].matchExpressions[{j}]").get("key"), f"{where}[{i}].key")
    return terms


def _expressions(term: Mapping[str, Any]) -> list[dict[str, Any]]:
    exprs: list[dict[str, Any]] = term.get("matchExpressions") or []
    return exprs


def _key_in_affinity(pv: Mapping[str, Any], key: str) -> bool:
    return any(e["key"] == key for t in _terms(pv) for e in _expressions(t))


def _affinity_values(pv: Mapping[str, Any], key: str) -> list[str]:
    """Unique values of every ``key`` expression of every term, sorted (the lib's getTopologyValues)."""
    return sorted(
        {str(v) for t in _terms(pv) for e in _expressions(t) if e["key"] == key for v in _values(e)}
    )


def _values(expr: Mapping[str, Any]) -> list[Any]:
    return _list(expr.get("values") or [], f"values of the {expr['key']} expression")


def _replace_key(pv: dict[str, Any], old: str, new: str) -> None:
    """Rename ``old`` expressions to ``new``; an expression that becomes an exact duplicate is dropped."""
    for term in _terms(pv):
        exprs = _expressions(term)
        kept: list[dict[str, Any]] = []
        for expr in exprs:
            if expr["key"] == old:
                expr["key"] = new
            if expr not in kept:
                kept.append(expr)
        if exprs:
            term["matchExpressions"] = kept


def _add_to_every_term(pv: dict[str, Any], key: str, values: list[str]) -> None:
    """Append ``key In values`` to every nodeSelectorTerm, creating one term when there is none."""
    spec = pv["spec"]
    affinity = spec.setdefault("nodeAffinity", None) or {}
    spec["nodeAffinity"] = affinity
    required = affinity.get("required") or {}
    affinity["required"] = required
    terms = required.get("nodeSelectorTerms") or [{}]
    required["nodeSelectorTerms"] = terms
    for term in terms:
        term["matchExpressions"] = [
            *_expressions(term),
            {"key": key, "operator": "In", "values": list(values)},
        ]


def _topology_labels(pv: Mapping[str, Any]) -> tuple[str, str]:
    """(zone key, region key) the PV uses: GA or beta, nodeAffinity first, then labels, else GA."""
    labels = _labels(pv)
    if _key_in_affinity(pv, ZONE_KEY):
        return ZONE_KEY, REGION_KEY
    if _key_in_affinity(pv, LEGACY_ZONE_KEY):
        return LEGACY_ZONE_KEY, LEGACY_REGION_KEY
    if ZONE_KEY in labels:
        return ZONE_KEY, REGION_KEY
    if LEGACY_ZONE_KEY in labels:
        return LEGACY_ZONE_KEY, LEGACY_REGION_KEY
    return ZONE_KEY, REGION_KEY


# ---------------------------------------------------------------------------------------------------
# PersistentVolume


def pv_to_csi(pv: Mapping[str, Any], driver_name: str = DEFAULT_DRIVER_NAME) -> dict[str, Any]:
    """An in-tree ``awsElasticBlockStore`` PV as a CSI PV of ``driver_name`` (rules in the module doc)."""
    out = _object(pv, "PersistentVolume")
    spec = _mapping(out.get("spec"), "spec")
    if "csi" in spec:
        raise TranslationError("spec.csi is already set: this is a CSI volume, not an in-tree one")
    ebs = _mapping(spec.get("awsElasticBlockStore"), "spec.awsElasticBlockStore")
    volume_id = _string(ebs.get("volumeID"), "spec.awsElasticBlockStore.volumeID")
    partition = ebs.get("partition", 0)
    if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
        raise TranslationError("spec.awsElasticBlockStore.partition must be a non-negative integer")
    csi: dict[str, Any] = {"driver": driver_name, "volumeHandle": ebs_volume_id(volume_id)}
    if ebs.get("fsType"):
        csi["fsType"] = _string(ebs["fsType"], "spec.awsElasticBlockStore.fsType")
    read_only = ebs.get("readOnly", False)
    if not isinstance(read_only, bool):
        raise TranslationError("spec.awsElasticBlockStore.readOnly must be true or false")
    if read_only:
        csi["readOnly"] = True
    # csi-translation-lib: partition always travels as a volume attribute, "0" for the whole disk.
    csi["volumeAttributes"] = {PARTITION_ATTRIBUTE: str(partition)}
    del spec["awsElasticBlockStore"]
    spec["csi"] = csi
    _topology_to_csi(out, zone_from_volume_id(volume_id))
    _swap_provisioned_by(out, {IN_TREE_PROVISIONER}, driver_name)
    return out


def _topology_to_csi(pv: dict[str, Any], url_zone: str) -> None:
    zone_key, region_key = _topology_labels(pv)
    if _affinity_values(pv, zone_key):
        # In-tree topology has precedence over zone labels.
        _replace_key(pv, zone_key, CSI_ZONE_KEY)
    else:
        label = _labels(pv).get(zone_key)
        zones = split_zones(_string(label, f"label {zone_key}"), MULTI_ZONE_DELIMITER) if label else []
        if not zones and url_zone:
            zones = [url_zone]  # zonal: the zone of aws://<zone>/vol-… when nothing else names one
        if zones:
            _add_to_every_term(pv, CSI_ZONE_KEY, zones)
    # A beta region expression becomes GA so that nodes with only GA labels still match.
    if region_key == LEGACY_REGION_KEY and _affinity_values(pv, LEGACY_REGION_KEY):
        _replace_key(pv, LEGACY_REGION_KEY, REGION_KEY)


def pv_to_in_tree(pv: Mapping[str, Any], driver_name: str = DEFAULT_DRIVER_NAME) -> dict[str, Any]:
    """A CSI PV of ``driver_name`` (or aws-ebs-csi-driver's) as an in-tree ``awsElasticBlockStore`` PV."""
    out = _object(pv, "PersistentVolume")
    spec = _mapping(out.get("spec"), "spec")
    csi = _mapping(spec.get("csi"), "spec.csi")
    drivers = {driver_name, EBS_DRIVER_NAME}
    driver = csi.get("driver")
    if driver not in drivers:
        raise TranslationError(f"spec.csi.driver is {driver!r}, expected one of {sorted(drivers)}")
    handle = _string(csi.get("volumeHandle"), "spec.csi.volumeHandle")
    if not _EBS_VOLUME_ID_RE.match(handle):
        raise TranslationError(f"spec.csi.volumeHandle {handle!r} is not an EBS volume id (vol-…)")
    ebs: dict[str, Any] = {"volumeID": handle}
    if csi.get("fsType"):
        ebs["fsType"] = _string(csi["fsType"], "spec.csi.fsType")
    attributes = _mapping(csi.get("volumeAttributes") or {}, "spec.csi.volumeAttributes")
    if PARTITION_ATTRIBUTE in attributes:
        raw = str(attributes[PARTITION_ATTRIBUTE])
        if not raw.isdigit():
            raise TranslationError(f"spec.csi.volumeAttributes.partition {raw!r} is not an integer")
        if int(raw):
            ebs["partition"] = int(raw)
    if csi.get("readOnly") is True:
        ebs["readOnly"] = True
    del spec["csi"]
    spec["awsElasticBlockStore"] = ebs
    _topology_to_in_tree(out)
    _swap_provisioned_by(out, drivers, IN_TREE_PROVISIONER)
    return out


def _topology_to_in_tree(pv: dict[str, Any]) -> None:
    zone_key, region_key = _topology_labels(pv)
    for key in CSI_ZONE_KEYS:
        if key != zone_key:
            _replace_key(pv, key, zone_key)
    for i, term in enumerate(_terms(pv)):
        exprs = _expressions(term)
        if any(e["key"] == region_key for e in exprs):
            continue
        zones = [str(v) for e in exprs if e["key"] == zone_key for v in _values(e)]
        try:
            region = region_from_zones(zones)
        except TranslationError as e:
            raise TranslationError(f"nodeSelectorTerms[{i}]: {e}") from e
        term["matchExpressions"] = [*exprs, {"key": region_key, "operator": "In", "values": [region]}]
    zones = _affinity_values(pv, zone_key)
    if zones:
        _metadata_map(pv, "labels").setdefault(zone_key, MULTI_ZONE_DELIMITER.join(zones))
    regions = _affinity_values(pv, region_key)
    if len(regions) == 1:
        _metadata_map(pv, "labels").setdefault(region_key, regions[0])


def _swap_provisioned_by(obj: dict[str, Any], old: Iterable[str], new: str) -> None:
    meta = obj.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(annotations, dict) and annotations.get(PROVISIONED_BY) in set(old):
        annotations[PROVISIONED_BY] = new


# ---------------------------------------------------------------------------------------------------
# StorageClass


def _parameters(sc: Mapping[str, Any]) -> dict[str, str]:
    params = _mapping(sc.get("parameters") or {}, "parameters")
    for key, value in params.items():
        # The API only takes strings here; YAML turns an unquoted true or 10 into something else.
        _string(value, f"parameters.{key} (quote the value)")
    return params


def _topology_terms(sc: Mapping[str, Any]) -> list[dict[str, Any]]:
    terms = _list(sc.get("allowedTopologies") or [], "allowedTopologies")
    for i, term in enumerate(terms):
        exprs = _mapping(term, f"allowedTopologies[{i}]").get("matchLabelExpressions") or []
        for j, expr in enumerate(_list(exprs, f"allowedTopologies[{i}].matchLabelExpressions")):
            where = f"allowedTopologies[{i}].matchLabelExpressions[{j}]"
            _string(_mapping(expr, where).get("key"), f"{where}.key")
    return terms


def _rename_topology_keys(terms: list[dict[str, Any]], rename: Callable[[str], str]) -> None:
    for term in terms:
        for expr in term.get("matchLabelExpressions") or []:
            expr["key"] = rename(expr["key"])


def storageclass_to_csi(sc: Mapping[str, Any], driver_name: str = DEFAULT_DRIVER_NAME) -> dict[str, Any]:
    """An in-tree ``kubernetes.io/aws-ebs`` StorageClass for ``driver_name`` (rules: module doc)."""
    out = _object(sc, "StorageClass")
    provisioner = out.get("provisioner")
    if provisioner != IN_TREE_PROVISIONER:
        raise TranslationError(f"provisioner is {provisioner!r}, expected {IN_TREE_PROVISIONER!r}")
    params: dict[str, str] = {}
    zones: list[str] | None = None
    zone_param = ""
    for key, value in _parameters(out).items():
        lower = key.lower()
        if lower == "fstype":
            params[PARAM_FS_TYPE] = value
        elif lower in ("zone", "zones"):
            if zone_param:
                # The in-tree plugin refused both at once; the lib would keep whichever came last.
                raise TranslationError(f"parameters {zone_param!r} and {key!r} must not be used together")
            zone_param = key
            found = [value] if lower == "zone" else value.split(",")
            zones = [z.strip() for z in found if z.strip()]
            if not zones:
                raise TranslationError(f"parameters.{key} names no zone")
        else:
            params[key] = value
    terms = _topology_terms(out)
    if zones is not None and terms:
        raise TranslationError("cannot set both allowedTopologies and the zone/zones parameters")
    if zones is not None:
        out["allowedTopologies"] = [{"matchLabelExpressions": [{"key": CSI_ZONE_KEY, "values": zones}]}]
    elif terms:
        _rename_topology_keys(terms, lambda k: CSI_ZONE_KEY if k in (LEGACY_ZONE_KEY, ZONE_KEY) else k)
    out["provisioner"] = driver_name
    if params or "parameters" in out:
        out["parameters"] = params
    return out


def storageclass_to_in_tree(sc: Mapping[str, Any], driver_name: str = DEFAULT_DRIVER_NAME) -> dict[str, Any]:
    """A StorageClass of ``driver_name`` (or aws-ebs-csi-driver's) as a ``kubernetes.io/aws-ebs`` one."""
    out = _object(sc, "StorageClass")
    drivers = {driver_name, EBS_DRIVER_NAME}
    provisioner = out.get("provisioner")
    if provisioner not in drivers:
        raise TranslationError(f"provisioner is {provisioner!r}, expected one of {sorted(drivers)}")
    params: dict[str, str] = {}
    for key, value in _parameters(out).items():
        if key.lower() == PARAM_FS_TYPE:
            params[IN_TREE_FS_TYPE] = value
        elif key.lower() in IN_TREE_PARAMS:
            params[key] = value
        else:
            raise TranslationError(f"parameters.{key} has no in-tree kubernetes.io/aws-ebs equivalent")
    terms = _topology_terms(out)
    # The in-tree plugin reads topology.kubernetes.io/zone and the beta key, not the EBS driver's key.
    _rename_topology_keys(terms, lambda k: ZONE_KEY if k == EBS_ZONE_KEY else k)
    out["provisioner"] = IN_TREE_PROVISIONER
    if params or "parameters" in out:
        out["parameters"] = params
    return out


__all__ = [
    "CSI_ZONE_KEY",
    "IN_TREE_PROVISIONER",
    "LEGACY_REGION_KEY",
    "REGION_KEY",
    "TranslationError",
    "ebs_volume_id",
    "pv_to_csi",
    "pv_to_in_tree",
    "region_from_zones",
    "split_zones",
    "storageclass_to_csi",
    "storageclass_to_in_tree",
    "zone_from_volume_id",
]
