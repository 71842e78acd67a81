"""The pure helpers behind ``zonal csi``: key=value parsing, sizes, the text renderer."""

from __future__ import annotations

import pytest

from provisioner.csi.cli_client import Pairs, human_bytes, parse_pairs, render_json, render_text


def test_parse_pairs() -> None:
    assert parse_pairs("a=1, b = 2") == {"a": "1", "b": "2"}
    assert parse_pairs("k=") == {"k": ""}
    for bad in ("", "novalue", "=v"):
        with pytest.raises(ValueError):
            parse_pairs(bad)


@pytest.mark.parametrize(
    ("count", "shown"),
    [(1 << 30, "1Gi"), (10 * (1 << 30), "10Gi"), (1536, "~1.5Ki"), (512, "512B"), (10**9, "~953.7Mi")],
)
def test_human_bytes(count: int, shown: str) -> None:
    assert human_bytes(count) == shown


def test_render_text_records_maps_lists_and_blocks() -> None:
    result = {
        "volumes": [
            {"volume_id": "vol-1", "capacity_bytes": 1 << 30, "accessible_topology": [Pairs(z="a", r="x")]},
            {"volume_id": "vol-2", "capacity_bytes": 0, "accessible_topology": [], "abnormal": False},
        ],
        "next_token": "t",
        "nested": {"context": Pairs(), "ids": ["i-1", "i-2"]},
    }
    assert render_text(result) == (
        "volume_id: vol-1\ncapacity_bytes: 1073741824 (1Gi)\naccessible_topology: z=a,r=x\n\n"
        "volume_id: vol-2\ncapacity_bytes: 0\naccessible_topology: -\nabnormal: false\n\n"
        "next_token: t\nnested.context: -\nnested.ids: i-1, i-2"
    )


def test_render_text_of_an_empty_list_and_two_segments() -> None:
    assert render_text({"volumes": []}) == "volumes: -"
    assert render_text({"topology": [Pairs(z="a"), Pairs(z="b")]}) == "topology: z=a z=b"


def test_render_json_keeps_numbers_and_maps() -> None:
    assert render_json({"n": 1, "p": Pairs(k="v")}) == '{\n  "n": 1,\n  "p": {\n    "k": "v"\n  }\n}'
