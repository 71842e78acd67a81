"""The discovery documents of the fake API server: what ``kubectl`` reads before any ``get``.

Why it exists: a client that does not know the resources beforehand (kubectl, the official client's
``DynamicClient``) first asks ``/api`` and ``/apis`` which groups and versions exist, then
``/api/v1`` and ``/apis/<group>/<version>`` which resources each serves, their kinds, short names,
scope and verbs. Without these the demo's printed ``kubectl … get pv`` fails with 404. The documents
are derived from :class:`~provisioner.ports.kube.Kind`, so they list exactly what the fake serves.
It serves nothing itself (see :mod:`.fakeapi`).
"""

from __future__ import annotations

from typing import Any

from provisioner.ports.kube import Kind

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]
SHORT_NAMES = {
    "persistentvolumeclaims": ["pvc"],
    "persistentvolumes": ["pv"],
    "nodes": ["no"],
    "pods": ["po"],
    "events": ["ev"],
    "storageclasses": ["sc"],
    "volumesnapshots": ["vs"],
    "volumesnapshotcontents": ["vsc"],
}
VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-zonal-fake",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "1970-01-01T00:00:00Z",
    "platform": "linux/amd64",
    "goVersion": "n/a",
    "compiler": "n/a",
}


def _group_versions() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind in Kind:
        versions = out.setdefault(kind.group, [])
        if kind.version not in versions:
            versions.append(kind.version)
    return out


def core_versions(server_address: str) -> dict[str, Any]:
    """``GET /api``: the legacy core group's versions."""
    return {
        "kind": "APIVersions",
        "versions": _group_versions().get("", []),
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def group_list() -> dict[str, Any]:
    """``GET /apis``: every named group with its versions."""
    groups = []
    for group, versions in sorted(_group_versions().items()):
        if not group:
            continue
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(name: str) -> dict[str, Any] | None:
    """``GET /apis/<group>``: one group, or None when the fake does not serve it."""
    for entry in group_list()["groups"]:
        if entry["name"] == name:
            return {"kind": "APIGroup", "apiVersion": "v1", **entry}
    return None


def resource_list(group_name: str, version: str) -> dict[str, Any] | None:
    """``GET /api/v1`` or ``GET /apis/<group>/<version>``: the resources served there, or None."""
    kinds = [k for k in Kind if k.group == group_name and k.version == version]
    if not kinds:
        return None
    resources = []
    for kind in sorted(kinds, key=lambda k: k.plural):
        resources.append(
            {
                "name": kind.plural,
                "singularName": kind.kind_name.lower(),
                "namespaced": kind.namespaced,
                "kind": kind.kind_name,
                "verbs": VERBS,
                "shortNames": SHORT_NAMES.get(kind.plural, []),
            }
        )
    group_version = f"{group_name}/{version}" if group_name else version
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    }


def document(path: str, server_address: str) -> dict[str, Any] | None:
    """The discovery document at URL ``path``, or None when ``path`` is not a discovery path."""
    parts = [p for p in path.split("/") if p]
    if parts == ["version"]:
        return dict(VERSION)
    if parts == ["api"]:
        return core_versions(server_address)
    if parts == ["apis"]:
        return group_list()
    if len(parts) == 2 and parts[0] == "api":
        return resource_list("", parts[1])
    if len(parts) == 2 and parts[0] == "apis":
        return group(parts[1])
    if len(parts) == 3 and parts[0] == "apis":
        return resource_list(parts[1], parts[2])
    return None
