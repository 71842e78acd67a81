"""Instance metadata (IMDSv2) as a node metadata source: instance id, zone, type, region, devices.

IMDSv2 first asks for a session token (``PUT /latest/api/token``) and sends it with every GET. Short
timeouts: on a machine that is not an EC2 instance the node must fall through to the next source in
about a second, not hang. Uses urllib (no boto3 needed for six GETs) with proxies disabled, since the
link-local address must never go through a proxy. Failures become domain errors (Unavailable when
unreachable or timing out, NotFound for a missing required key); this module decides nothing else.
"""

from __future__ import annotations

import urllib.error
import urllib.request

from provisioner.errors import NotFound, Unavailable
from provisioner.ports.node import NodeMetadata

DEFAULT_ENDPOINT = "http://169.254.169.254"
TOKEN_TTL_SECONDS = 21600
_TOKEN_TTL_HEADER = "X-aws-ec2-metadata-token-ttl-seconds"
_TOKEN_HEADER = "X-aws-ec2-metadata-token"


class ImdsClient:
    """Implements :class:`provisioner.ports.node.Metadata` against the EC2 instance metadata service."""

    name = "imds"

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = 1.0) -> None:
        self.endpoint = endpoint.rstrip("/")
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._token = ""

    def _open(self, request: urllib.request.Request) -> str:
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                body: bytes = response.read()
                return body.decode()
        except urllib.error.HTTPError as e:
            if e.code == 404:
                raise NotFound(f"instance metadata has no {request.full_url}") from e
            raise Unavailable(f"instance metadata {request.full_url} answered HTTP {e.code}") from e
        except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
            reason = getattr(e, "reason", e)
            raise Unavailable(f"instance metadata at {self.endpoint} unreachable: {reason}") from e

    def token(self) -> str:
        """A fresh IMDSv2 session token."""
        request = urllib.request.Request(
            f"{self.endpoint}/latest/api/token",
            method="PUT",
            headers={_TOKEN_TTL_HEADER: str(TOKEN_TTL_SECONDS)},
        )
        self._token = self._open(request).strip()
        return self._token

    def get(self, path: str) -> str:
        """``/latest/meta-data/<path>``; a rejected (expired) token is renewed once."""
        for attempt in range(2):
            token = self._token if self._token and attempt == 0 else self.token()
            request = urllib.request.Request(
                f"{self.endpoint}/latest/meta-data/{path}", headers={_TOKEN_HEADER: token}
            )
            try:
                return self._open(request).strip()
            except Unavailable as e:
                if (
                    attempt == 0
                    and isinstance(e.__cause__, urllib.error.HTTPError)
                    and e.__cause__.code == 401
                ):
                    self._token = ""
                    continue
                raise
        raise Unavailable(f"instance metadata refused the session token for {path}")  # pragma: no cover

    def _optional(self, path: str) -> str | None:
        try:
            return self.get(path)
        except NotFound:
            return None

    @staticmethod
    def _count(listing: str | None, ignore: frozenset[str] = frozenset()) -> int | None:
        if listing is None:
            return None
        return len({line.strip().rstrip("/") for line in listing.splitlines() if line.strip()} - ignore)

    def fetch(self) -> NodeMetadata:
        instance_id = self.get("instance-id")
        zone = self.get("placement/availability-zone")
        instance_type = self._optional("instance-type") or ""
        region = self._optional("placement/region") or ""
        # "ami" and "root" both name the root volume; ebsN and ephemeralN are the others.
        devices = self._count(self._optional("block-device-mapping/"), frozenset({"ami"}))
        enis = self._count(self._optional("network/interfaces/macs/"))
        return NodeMetadata(
            instance_id=instance_id,
            zone=zone,
            instance_type=instance_type,
            region=region,
            block_device_count=devices if devices else None,
            eni_count=enis if enis else None,
            source=self.name,
        )
