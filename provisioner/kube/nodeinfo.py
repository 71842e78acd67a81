"""The Kubernetes Node object as a node metadata source (for nodes where IMDS is blocked).

Reads the Node named by ``CSI_NODE_NAME`` (the CLI passes the name in): the zone label, the instance
type label and ``spec.providerID`` (``aws:///us-east-1a/i-0123…``), which carries the instance id and
the zone. Uses the official client, in-cluster config first, then kubeconfig. Errors become domain
errors here; nothing else of the cluster is touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from provisioner.errors import FailedPrecondition, NotFound, Unavailable
from provisioner.model import LEGACY_ZONE_KEY, ZONE_KEY
from provisioner.ports.node import NodeMetadata

INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
LEGACY_INSTANCE_TYPE_LABEL = "beta.kubernetes.io/instance-type"
_PROVIDER_ID_RE = re.compile(r"^aws://(?:/(?P<zone>[^/]*))?/(?P<instance>i-[0-9a-zA-Z]+)$")


def parse_provider_id(provider_id: str) -> tuple[str, str]:
    """``aws:///us-east-1a/i-0123`` → (``i-0123``, ``us-east-1a``); ("", "") if it is not AWS's form."""
    m = _PROVIDER_ID_RE.match(provider_id.strip())
    if not m:
        return "", ""
    return m.group("instance"), m.group("zone") or ""


def _default_api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except (config.ConfigException, OSError) as e:
            raise FailedPrecondition(f"no in-cluster config and no usable kubeconfig: {e}") from e
    return client.CoreV1Api()


class KubeNodeMetadata:
    """Implements :class:`provisioner.ports.node.Metadata` from the Node object ``node_name``."""

    name = "kubernetes"

    def __init__(self, node_name: str, api_factory: Callable[[], Any] | None = None) -> None:
        self.node_name = node_name
        self._api_factory = api_factory or _default_api

    def fetch(self) -> NodeMetadata:
        if not self.node_name:
            raise FailedPrecondition("CSI_NODE_NAME is not set")
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        api = self._api_factory()
        try:
            node = api.read_node(self.node_name, _request_timeout=5)
        except ApiException as e:
            if e.status == 404:
                raise NotFound(f"Node {self.node_name} does not exist") from e
            raise Unavailable(f"reading Node {self.node_name} failed: HTTP {e.status} {e.reason}") from e
        except HTTPError as e:
            raise Unavailable(f"Kubernetes API unreachable reading Node {self.node_name}: {e}") from e
        labels = dict(node.metadata.labels or {})
        instance_id, provider_zone = parse_provider_id((node.spec and node.spec.provider_id) or "")
        return NodeMetadata(
            instance_id=instance_id,
            zone=labels.get(ZONE_KEY) or labels.get(LEGACY_ZONE_KEY) or provider_zone,
            instance_type=labels.get(INSTANCE_TYPE_LABEL) or labels.get(LEGACY_INSTANCE_TYPE_LABEL) or "",
            source=self.name,
        )
