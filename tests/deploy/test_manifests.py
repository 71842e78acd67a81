"""deploy/: every way to apply it renders (a small kustomize, cross-checked with kubectl's when installed)
and each object validates against the Kubernetes API schema, and says what we mean.

Schema: the official ``kubernetes`` client's models, walked strictly (unknown fields and wrong scalar
types fail) — see :mod:`tests.deploy.k8s_schema`. CRD kinds the client lacks (VolumeSnapshotClass) are
checked by hand. Beyond the schema: the kustomizations list every file, the CSIDriver name equals the
driver's default name, RBAC grants what each component needs (and no more than it should), and the
Deployment/DaemonSet wire sockets, volumes and service accounts consistently.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import provisioner.cli
from provisioner.config import DEFAULT_DRIVER_NAME
from tests.deploy.k8s_schema import SchemaError, check, model_for
from tests.deploy.kustomize import key, render

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
BASE = DEPLOY / "base"
OVERLAY = DEPLOY / "overlays" / "zonal-provisioner"
COMPONENTS = {name: DEPLOY / "components" / name for name in ("snapshots", "irsa")}
CRD_KINDS = {"VolumeSnapshotClass"}
CONTROLLER_SOCKET_DIR = "/var/lib/csi/sockets/pluginproxy/"
ZONAL_IMAGE = f"zonal:{tomllib.loads((DEPLOY.parent / 'pyproject.toml').read_text())['project']['version']}"
# Every way deploy/ can be applied: the two entry points, alone and with each optional component.
ENTRY_POINTS = {"default": DEPLOY, "zonal-provisioner": OVERLAY}
RENDERS = {
    f"{entry}{''.join('+' + c for c in combo)}": (root, tuple(COMPONENTS[c] for c in combo))
    for entry, root in ENTRY_POINTS.items()
    for combo in ((), ("snapshots",), ("irsa",), ("snapshots", "irsa"))
}


def load(path: Path) -> list[dict[str, Any]]:
    """The documents of one file (parsed once per run; each caller gets its own copy)."""
    return copy.deepcopy(_parse(path))


@functools.cache
def _parse(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


@functools.cache
def _rendered(name: str) -> list[dict[str, Any]]:
    root, components = RENDERS[name]
    return render(root, components)


def rendered(name: str) -> list[dict[str, Any]]:
    return copy.deepcopy(_rendered(name))


def manifests() -> list[dict[str, Any]]:
    """The full installation: the default entry point with every optional component."""
    return rendered("default+snapshots+irsa")


def find(kind: str, name: str | None = None, docs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    docs = manifests() if docs is None else docs
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def containers(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in workload["spec"]["template"]["spec"]["containers"]}


def overlay_deployment() -> dict[str, Any]:
    return find("Deployment", "zonal-controller", rendered("zonal-provisioner+snapshots+irsa"))


# --- schema ----------


def _ids() -> Iterator[Any]:
    for name in RENDERS:
        for doc in _rendered(name):
            yield pytest.param(doc, id=f"{name}:{doc['kind']}/{doc['metadata']['name']}")


@pytest.mark.parametrize("doc", list(_ids()))
def test_every_rendered_object_validates_against_the_api_schema(doc: dict[str, Any]) -> None:
    if doc["kind"] in CRD_KINDS:
        assert doc["apiVersion"] == "snapshot.storage.k8s.io/v1"
        assert set(doc) <= {"apiVersion", "kind", "metadata", "driver", "deletionPolicy", "parameters"}
        assert doc["driver"] == DEFAULT_DRIVER_NAME
        assert doc["deletionPolicy"] in ("Delete", "Retain")
        assert "namespace" not in doc["metadata"]  # cluster-scoped
    else:
        assert check(doc) is not None


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_the_entry_points_apply_on_a_cluster_without_snapshot_crds(entry: str) -> None:
    """The reported failure: the base included a VolumeSnapshotClass, so `kubectl apply -k deploy/` failed
    on clusters without the snapshot CRDs. Every kind it renders is built into Kubernetes."""
    for doc in rendered(entry):
        assert doc["kind"] not in CRD_KINDS
        model_for(doc["apiVersion"], doc["kind"])
    assert "csi-snapshotter" not in containers(find("Deployment", "zonal-controller", rendered(entry)))
    with_snapshots = rendered(f"{entry}+snapshots")
    assert find("VolumeSnapshotClass", docs=with_snapshots)["driver"] == DEFAULT_DRIVER_NAME
    assert "csi-snapshotter" in containers(find("Deployment", "zonal-controller", with_snapshots))
    find("ClusterRole", "zonal-snapshotter-role", with_snapshots)


def test_overlay_deployment_validates_and_swaps_the_provisioner() -> None:
    deployment = overlay_deployment()
    assert check(deployment) is not None
    by_name = containers(deployment)
    assert "csi-provisioner" not in by_name
    zonal_provisioner = by_name["zonal-provisioner"]
    assert zonal_provisioner["image"] == ZONAL_IMAGE
    args = zonal_provisioner["args"]
    assert args[:3] == ["provisioner", "--csi-address", f"unix://{CONTROLLER_SOCKET_DIR}csi.sock"]
    assert "--leader-election" in args
    assert {m["name"] for m in zonal_provisioner["volumeMounts"]} == {"socket-dir"}
    # Everything else of the base Deployment is kept.
    assert {"zonal", "csi-attacher", "csi-resizer", "csi-snapshotter", "liveness-probe"} <= set(by_name)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "a", "labelz": {}}},
            "unknown field",
        ),
        (
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "CSIDriver",
                "metadata": {"name": "a"},
                "spec": {"attachRequired": "yes"},
            },
            "expected bool",
        ),
        (
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "a"},
                "spec": {"replicas": "2"},
            },
            "expected int",
        ),
        ({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"image": "x"}]}}, "name"),
        ({"apiVersion": "example.com/v1", "kind": "Widget"}, "no model"),
    ],
)
def test_the_checker_rejects_what_the_api_server_would(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaError, match=message):
        check(doc)


# --- kustomize ----------


@pytest.mark.parametrize("folder", [BASE, *COMPONENTS.values()], ids=lambda p: p.name)
def test_each_kustomization_lists_every_file_of_its_folder(folder: Path) -> None:
    [kustomization] = load(folder / "kustomization.yaml")
    listed = list(kustomization.get("resources", [])) + [p["path"] for p in kustomization.get("patches", [])]
    files = {p.name for p in folder.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(listed) == sorted(files)
    assert len(listed) == len(set(listed))


@pytest.mark.parametrize("root", [DEPLOY, OVERLAY], ids=["default", "zonal-provisioner"])
def test_entry_points_use_the_base_and_set_the_image_the_documented_way(root: Path) -> None:
    [kustomization] = load(root / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    for resource in kustomization["resources"]:
        assert (root / resource).resolve() == BASE
    for patch in kustomization.get("patches", []):
        assert (root / patch["path"]).is_file()
    assert kustomization["images"] == [
        {"name": "zonal", "newName": "zonal", "newTag": ZONAL_IMAGE.split(":")[1]}
    ]
    text = (root / "kustomization.yaml").read_text()
    assert "components/snapshots" in text and "components/irsa" in text  # how to turn them on
    guide = (DEPLOY / "kustomization.yaml").read_text()
    assert (
        "docker build -t" in guide and "docker push" in guide and "kustomize edit set image zonal=" in guide
    )


def test_images_zonal_by_kustomize_and_pinned_sidecars() -> None:
    for path in (BASE / "controller.yaml", BASE / "node.yaml", OVERLAY / "provisioner.yaml"):
        for doc in load(path):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                if container["name"].startswith("zonal"):
                    assert container["image"] == "zonal"  # the `images:` entry names it
    for name in RENDERS:
        for workload in (d for d in rendered(name) if d["kind"] in ("Deployment", "DaemonSet")):
            for container in containers(workload).values():
                image = container["image"]
                if container["name"].startswith("zonal"):
                    assert image == ZONAL_IMAGE
                else:
                    assert re.fullmatch(r"registry\.k8s\.io/sig-storage/[a-z-]+:v\d+\.\d+\.\d+", image), image


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (with its kustomize) is not installed")
@pytest.mark.parametrize("name", sorted(RENDERS))
def test_the_renderer_agrees_with_kubectl_kustomize(name: str, tmp_path: Path) -> None:
    """Where kubectl is installed: our renderer and the real kustomize print the same objects."""
    root, components = RENDERS[name]
    copy_of = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy_of)
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [str((copy_of / root.relative_to(DEPLOY)).relative_to(tmp_path))],
                "components": [
                    str((copy_of / c.relative_to(DEPLOY)).relative_to(tmp_path)) for c in components
                ],
            }
        )
    )
    done = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    theirs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert _normal(theirs) == _normal(rendered(name))


def _normal(docs: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
    def sort(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: sort(v) for k, v in value.items()}
        if isinstance(value, list) and all(isinstance(i, dict) and "name" in i for i in value):
            return sorted((sort(i) for i in value), key=lambda i: str(i["name"]))
        if isinstance(value, list):
            return [sort(i) for i in value]
        return value

    return {key(d): sort(d) for d in docs}


# --- driver objects ----------


def test_csidriver_matches_the_driver() -> None:
    driver = find("CSIDriver")
    assert driver["metadata"]["name"] == DEFAULT_DRIVER_NAME
    assert driver["spec"] == {
        "attachRequired": True,
        "podInfoOnMount": False,
        "fsGroupPolicy": "File",
        "volumeLifecycleModes": ["Persistent"],
    }


def test_storageclass_is_wait_for_first_consumer_gp3() -> None:
    sc = find("StorageClass")
    assert sc["provisioner"] == DEFAULT_DRIVER_NAME
    assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
    assert sc["allowVolumeExpansion"] is True
    assert sc["parameters"]["type"] == "gp3"


def test_controller_deployment() -> None:
    deployment = find("Deployment", "zonal-controller")
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 65532
    by_name = containers(deployment)
    assert by_name["zonal"]["args"] == [
        "controller",
        "--endpoint",
        f"unix://{CONTROLLER_SOCKET_DIR}csi.sock",
        "--http-endpoint=:8080",
    ]
    provisioner_args = by_name["csi-provisioner"]["args"]
    for flag in (
        "--feature-gates=Topology=true",
        "--extra-create-metadata",
        "--default-fstype=ext4",
        "--leader-election",
    ):
        assert flag in provisioner_args
    for sidecar in ("csi-attacher", "csi-resizer", "csi-snapshotter"):
        assert "--leader-election" in by_name[sidecar]["args"]
    for container in by_name.values():
        assert any(
            m["mountPath"].rstrip("/") in (CONTROLLER_SOCKET_DIR.rstrip("/"), "/csi")
            for m in container["volumeMounts"]
        )
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # The kubelet's liveness check reaches the livenessprobe sidecar's port.
    probe_port = next(a for a in by_name["liveness-probe"]["args"] if a.startswith("--health-port="))
    assert by_name["zonal"]["ports"][0]["containerPort"] == int(probe_port.split("=")[1])


def test_node_daemonset() -> None:
    daemonset = find("DaemonSet", "zonal-node")
    pod = daemonset["spec"]["template"]["spec"]
    assert {"operator": "Exists"} in pod["tolerations"]  # every taint
    volumes = {v["name"]: v for v in pod["volumes"]}
    by_name = containers(daemonset)
    zonal = by_name["zonal"]
    assert zonal["securityContext"]["privileged"] is True and zonal["securityContext"]["runAsUser"] == 0
    assert {"name": "CSI_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in zonal[
        "env"
    ]
    mounts = {m["mountPath"]: m for m in zonal["volumeMounts"]}
    assert mounts["/var/lib/kubelet"]["mountPropagation"] == "Bidirectional"
    assert volumes[mounts["/var/lib/kubelet"]["name"]]["hostPath"]["path"] == "/var/lib/kubelet"
    assert volumes[mounts["/dev"]["name"]]["hostPath"]["path"] == "/dev"
    assert zonal["args"][:3] == ["node", "--endpoint", "unix:///csi/csi.sock"]
    # The socket the registrar hands to the kubelet is the one the plugin serves, seen from the host.
    plugin_dir = volumes[mounts["/csi"]["name"]]["hostPath"]["path"]
    assert plugin_dir.rstrip("/") == f"/var/lib/kubelet/plugins/{DEFAULT_DRIVER_NAME}"
    registrar_env = {e["name"]: e["value"] for e in by_name["node-driver-registrar"]["env"]}
    assert registrar_env["DRIVER_REG_SOCK_PATH"] == f"{plugin_dir.rstrip('/')}/csi.sock"
    assert registrar_env["ADDRESS"] == "/csi/csi.sock"
    assert {"liveness-probe", "node-driver-registrar"} <= set(by_name)


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_workload_wiring_is_consistent(kind: str) -> None:
    for workload in [find(kind)] + ([overlay_deployment()] if kind == "Deployment" else []):
        pod = workload["spec"]["template"]["spec"]
        volumes = {v["name"] for v in pod["volumes"]}
        for container in pod["containers"]:
            assert {m["name"] for m in container.get("volumeMounts", [])} <= volumes
        assert pod["serviceAccountName"] in {
            sa["metadata"]["name"] for sa in manifests() if sa["kind"] == "ServiceAccount"
        }
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_zonal_containers_args_parse_with_the_real_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every flag the manifests pass to zonal exists (a typo would crash-loop the pod)."""
    modules = tuple(dict.fromkeys((*provisioner.cli.COMMAND_MODULES, "provisioner.cli.provision")))
    monkeypatch.setattr(provisioner.cli, "COMMAND_MODULES", modules)
    parser = provisioner.cli.build_parser()
    workloads = [find("Deployment"), find("DaemonSet"), overlay_deployment()]
    seen = set()
    for container in (c for w in workloads for c in containers(w).values() if c["image"] == ZONAL_IMAGE):
        args = parser.parse_args(container["args"])
        seen.add(args.command)
    assert seen == {"controller", "node", "provisioner"}


def test_irsa_is_opt_in() -> None:
    """The placeholder role ARN used to be live in the base; now only the irsa component sets one."""
    for entry in ENTRY_POINTS:
        for name in (entry, f"{entry}+snapshots"):
            assert (
                "annotations" not in find("ServiceAccount", "zonal-controller-sa", rendered(name))["metadata"]
            )
        sa = find("ServiceAccount", "zonal-controller-sa", rendered(f"{entry}+irsa"))
        assert re.fullmatch(
            r"arn:aws:iam::\d{12}:role/[\w+=,.@-]+",
            sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        )
    assert "annotations" not in find("ServiceAccount", "zonal-node-sa")["metadata"]


def test_the_controllers_region_is_an_explicit_manifest_setting() -> None:
    zonal = containers(find("Deployment", "zonal-controller"))["zonal"]
    [region] = [e for e in zonal["env"] if e["name"] == "AWS_REGION"]
    ref = region["valueFrom"]["configMapKeyRef"]
    config = find("ConfigMap", ref["name"])
    assert config["metadata"]["namespace"] == "kube-system" and ref["key"] in config["data"]
    assert "optional" not in ref  # a missing ConfigMap is an error, not a silent fallback
    assert "aws-region" in (DEPLOY / "kustomization.yaml").read_text()  # the guide says where to set it


def test_the_resizer_can_modify_volumes() -> None:
    """MODIFY_VOLUME is advertised: the resizer needs the VolumeAttributesClass gate and reads the classes."""
    resizer = containers(find("Deployment", "zonal-controller"))["csi-resizer"]
    assert "--feature-gates=VolumeAttributesClass=true" in resizer["args"]
    role = find("ClusterRole", "zonal-resizer-role")
    for verb in ("get", "list", "watch"):
        assert allows(role, "storage.k8s.io", "volumeattributesclasses", verb)


@pytest.mark.parametrize("kind", ["Deployment", "DaemonSet"])
def test_metrics_on_a_named_port_with_scrape_annotations(kind: str) -> None:
    workload = find(kind)
    zonal = containers(workload)["zonal"]
    [endpoint] = [a for a in zonal["args"] if a.startswith("--http-endpoint=")]
    port = int(endpoint.rsplit(":", 1)[1])
    assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in zonal["ports"]
    annotations = workload["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(port),
        "prometheus.io/path": "/metrics",
    }


# --- RBAC ----------

NEEDS: dict[str, list[tuple[str, str, str]]] = {
    "provisioner": [
        ("", "persistentvolumes", "create"),
        ("", "persistentvolumes", "delete"),
        ("", "persistentvolumes", "watch"),
        ("", "persistentvolumeclaims", "watch"),
        ("", "persistentvolumeclaims", "patch"),
        ("", "persistentvolumeclaims", "update"),
        ("", "events", "create"),
        ("storage.k8s.io", "storageclasses", "list"),
        ("storage.k8s.io", "csinodes", "get"),
        ("", "nodes", "get"),
        ("storage.k8s.io", "volumeattachments", "list"),
        ("snapshot.storage.k8s.io", "volumesnapshots", "get"),
    ],
    "attacher": [
        ("", "persistentvolumes", "patch"),
        ("", "nodes", "get"),
        ("storage.k8s.io", "volumeattachments", "patch"),
        ("storage.k8s.io", "volumeattachments/status", "patch"),
    ],
    "resizer": [
        ("", "persistentvolumes", "patch"),
        ("", "persistentvolumeclaims", "watch"),
        ("", "persistentvolumeclaims/status", "patch"),
        ("", "events", "create"),
    ],
    "snapshotter": [
        ("snapshot.storage.k8s.io", "volumesnapshotclasses", "get"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents", "update"),
        ("snapshot.storage.k8s.io", "volumesnapshotcontents/status", "update"),
        ("", "events", "create"),
    ],
    "node": [("", "nodes", "get")],
}


def allows(role: dict[str, Any], group: str, resource: str, verb: str) -> bool:
    return any(
        group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
        for rule in role["rules"]
    )


@pytest.mark.parametrize("component", sorted(NEEDS))
def test_each_component_has_its_own_cluster_role_with_what_it_needs(component: str) -> None:
    role = find("ClusterRole", f"zonal-{component}-role")
    for group, resource, verb in NEEDS[component]:
        assert allows(role, group, resource, verb), f"{component} cannot {verb} {resource}"
    binding = find("ClusterRoleBinding", f"zonal-{component}-binding")
    assert binding["roleRef"] == {
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
        "apiGroup": "rbac.authorization.k8s.io",
    }
    sa = "zonal-node-sa" if component == "node" else "zonal-controller-sa"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": "kube-system"}]


def test_rbac_is_least_privilege() -> None:
    roles = [d for d in manifests() if d["kind"] in ("ClusterRole", "Role")]
    assert len([r for r in roles if r["kind"] == "ClusterRole"]) == len(NEEDS)
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{role['metadata']['name']} uses a wildcard"
            assert "secrets" not in rule["resources"]
    assert find("ClusterRole", "zonal-node-role")["rules"] == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}
    ]
    # Leader-election Leases: a namespaced Role in the driver's namespace, not cluster-wide.
    leases = find("Role", "zonal-leader-election-role")
    assert leases["metadata"]["namespace"] == "kube-system"
    assert allows(leases, "coordination.k8s.io", "leases", "update")
    assert not any(
        allows(r, "coordination.k8s.io", "leases", "get") for r in roles if r["kind"] == "ClusterRole"
    )


def test_namespaced_objects_are_in_kube_system() -> None:
    namespaced = {
        "ConfigMap",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "DaemonSet",
        "PodDisruptionBudget",
    }
    for doc in manifests():
        if doc["kind"] in namespaced:
            assert doc["metadata"].get("namespace") == "kube-system", doc["metadata"]["name"]
        else:
            assert "namespace" not in doc["metadata"], doc["metadata"]["name"]
