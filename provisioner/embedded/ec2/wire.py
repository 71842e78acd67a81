"""The EC2 Query protocol as the simulator sees it: form parameters in, XML errors out.

Real EC2 answers errors as ``<Response><Errors><Error><Code>…`` with a RequestID, which is what
botocore's ``ec2`` parser reads into ``ClientError``. This module must not decide which error to send.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

# EC2 idempotency: parameters other than the Region and Availability Zone must match on a retry.
_NOT_SIGNED = frozenset(
    {"Action", "Version", "ClientToken", "AvailabilityZone", "AvailabilityZoneId", "DryRun"}
)
_REGION = re.compile(r"Credential=[^/,\s]+/\d{8}/([a-z0-9-]+)/")
_CODE = re.compile(rb"<Code>([^<]+)</Code>")


def parse_params(body: bytes, query: str = "") -> dict[str, str]:
    """Query-string then body parameters (the body wins, as it does for EC2's POST form)."""
    params = dict(parse_qsl(query, keep_blank_values=True))
    params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


def region_of(authorization: str | None) -> str | None:
    """The region a SigV4 ``Authorization`` header was signed for."""
    if not authorization:
        return None
    match = _REGION.search(authorization)
    return match.group(1) if match else None


def synthetic_authorization(region: str) -> str:
    """An (unverified) SigV4 header naming ``region``, for calls that carry none."""
    scope = f"zonal-sim/20200101/{region}/ec2/aws4_request"
    return f"AWS4-HMAC-SHA256 Credential={scope}, SignedHeaders=host, Signature=0"


def signature(params: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What an idempotent retry must repeat exactly."""
    return tuple(sorted((k, v) for k, v in params.items() if k not in _NOT_SIGNED))


def error_body(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
        f"</Errors><RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


def error_code(body: bytes) -> str:
    """The code of an error answer (moto's or ours)."""
    match = _CODE.search(body)
    return match.group(1).decode() if match else "Unknown"


XML_HEADERS = [("Content-Type", "text/xml;charset=UTF-8")]
JSON_HEADERS = [("Content-Type", "application/json")]
