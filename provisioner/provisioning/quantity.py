"""Kubernetes resource quantities (``10Gi``, ``1.5G``, ``500M``, ``1e3``) ↔ bytes.

Pure parsing and formatting; no rounding surprises: fractions round up to a whole byte.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from provisioner.errors import InvalidArgument

_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
_RE = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")
_BINARY = (("Ei", 2**60), ("Pi", 2**50), ("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10))


def parse_quantity(text: str) -> int:
    """Bytes in a quantity string, rounded up. Raises InvalidArgument."""
    m = _RE.match(text.strip())
    if not m:
        raise InvalidArgument(f"invalid quantity {text!r}")
    try:
        number = Decimal(m.group(1) + (m.group(2) or ""))
    except InvalidOperation as e:
        raise InvalidArgument(f"invalid quantity {text!r}") from e
    value = number * _SUFFIXES[m.group(3) or ""]
    if value < 0:
        raise InvalidArgument(f"negative quantity {text!r}")
    return math.ceil(value)


def format_bytes(count: int) -> str:
    """The quantity the sidecar writes (binary SI): ``10Gi`` when exact, else plain bytes."""
    for suffix, size in _BINARY:
        if count and count % size == 0:
            return f"{count // size}{suffix}"
    return str(count)
