"""The demo's fake API answers discovery the way kubectl needs it (issue #13: ``kubectl get pv`` from
``zonal demo --keep`` failed with 404 on ``/api`` and ``/apis``). Walked with the official client's
``DynamicClient``, which discovers like kubectl: ``/api``, ``/apis``, then each group version's resource
list, and finds a resource by kind or short name before it lists it."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import dynamic as _dynamic

from provisioner.embedded.kube.fakeapi import FakeApiServer, kubeconfig_for
from provisioner.embedded.kube.memory import MemoryKube
from provisioner.ports.kube import Kind

k8s: Any = k8s_client
k8s_cfg: Any = k8s_config
dynamic: Any = _dynamic  # the client is only partly typed


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Any]:
    kube = MemoryKube()
    kube.create(Kind.PV, {"metadata": {"name": "pv-1"}, "spec": {"capacity": {"storage": "1Gi"}}})
    kube.create(Kind.STORAGE_CLASS, {"metadata": {"name": "zonal-gp3"}, "provisioner": "zonal.csi.dev"})
    kube.create(Kind.CLAIM, {"metadata": {"name": "data", "namespace": "default"}, "spec": {}})
    server = FakeApiServer(kube).start()
    try:
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig_for(server.url))
        configuration = k8s.Configuration()
        k8s_cfg.load_kube_config(config_file=str(path), client_configuration=configuration)
        with k8s.ApiClient(configuration) as api_client:
            yield api_client
    finally:
        server.stop()


def test_core_and_group_discovery(api: Any) -> None:
    assert k8s.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name: g for g in k8s.ApisApi(api).get_api_versions().groups}
    assert {"storage.k8s.io", "coordination.k8s.io", "snapshot.storage.k8s.io"} <= set(groups)
    assert groups["storage.k8s.io"].preferred_version.group_version == "storage.k8s.io/v1"
    core = {r.name: r for r in k8s.CoreV1Api(api).get_api_resources().resources}
    assert core["persistentvolumes"].kind == "PersistentVolume" and not core["persistentvolumes"].namespaced
    assert core["persistentvolumeclaims"].short_names == ["pvc"] and core["persistentvolumeclaims"].namespaced
    assert "list" in core["persistentvolumes"].verbs and "watch" in core["persistentvolumes"].verbs
    storage = {r.name for r in k8s.StorageV1Api(api).get_api_resources().resources}
    assert {"storageclasses", "csinodes", "volumeattachments"} <= storage
    assert k8s.VersionApi(api).get_code().git_version.startswith("v1.")


def test_every_resource_the_fake_serves_is_discoverable_and_listable(api: Any, tmp_path: Path) -> None:
    client = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    for kind in Kind:
        resource = client.resources.get(api_version=kind.api_version, kind=kind.kind_name)
        assert resource.name == kind.plural and resource.namespaced == kind.namespaced
        listing = resource.get()
        assert listing.kind == f"{kind.kind_name}List"


def test_kubectl_get_pv_sc_pvc_by_short_name(api: Any, tmp_path: Path) -> None:
    """What ``kubectl --kubeconfig … get pv -o yaml`` (printed by the demo) does: resolve ``pv`` by short
    name through discovery, then list."""
    client = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    pv = client.resources.get(short_names=["pv"])
    assert [i.metadata.name for i in pv.get().items] == ["pv-1"]
    sc = client.resources.get(short_names=["sc"])
    assert [i.provisioner for i in sc.get().items] == ["zonal.csi.dev"]
    pvc = client.resources.get(short_names=["pvc"])
    assert [i.metadata.name for i in pvc.get(namespace="default").items] == ["data"]
    assert [i.metadata.name for i in pvc.get().items] == ["data"]  # -A: across namespaces


@pytest.mark.parametrize("path", ["/apis/example.com/v1", "/apis/example.com", "/api/v2", "/apis/a/b/c/d/e"])
def test_unknown_discovery_paths_are_404(api: Any, path: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(api.configuration.host + path, timeout=5)
    assert raised.value.code == 404
    raised.value.close()
