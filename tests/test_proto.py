"""The CSI wire protocol: generated bindings are current and match the CSI v1.12.0 wire facts."""

from __future__ import annotations

import importlib.util
import re
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import (
    Descriptor,
    EnumDescriptor,
    FieldDescriptor,
    FileDescriptor,
)
from google.protobuf.message import Message

from provisioner.csi._proto import csi_pb2

REPO_ROOT = Path(__file__).resolve().parents[1]
GENPROTO = REPO_ROOT / "tools" / "genproto.py"
COMMITTED = REPO_ROOT / "provisioner" / "csi" / "_proto"
# The CSI v1.12.0 wire facts, kept in the repository (proto/wire-v1.12.0.md says where they come from).
FACT_SHEET = REPO_ROOT / "proto" / "wire-v1.12.0.md"

PACKAGE = "csi.v1"
FILE: FileDescriptor = csi_pb2.DESCRIPTOR


def _load_genproto() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_zonal_genproto", GENPROTO)
    assert spec is not None and spec.loader is not None, f"cannot load {GENPROTO}"
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- drift


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    genproto = _load_genproto()
    generated: list[Path] = genproto.generate(tmp_path)
    fresh_dir = tmp_path / "provisioner" / "csi" / "_proto"
    versions = ", ".join(f"{dist} {metadata.version(dist)}" for dist in ("grpcio-tools", "mypy-protobuf"))
    hint = f"run python tools/genproto.py (generated here with {versions})"

    names = sorted(p.name for p in generated)
    committed = sorted(p.name for p in COMMITTED.iterdir() if p.is_file() and p.suffix in {".py", ".pyi"})
    assert committed == names, f"committed files {committed} != generated {names}: {hint}"
    stale = [name for name in names if (fresh_dir / name).read_bytes() != (COMMITTED / name).read_bytes()]
    assert not stale, f"provisioner/csi/_proto/{{{', '.join(stale)}}} differ from proto/csi.proto: {hint}"


def test_grpc_module_imports_generated_package() -> None:
    text = (COMMITTED / "csi_pb2_grpc.py").read_text(encoding="utf-8")
    assert "from provisioner.csi._proto import csi_pb2" in text


# --------------------------------------------------------------------------- helpers

_SCALAR_NAMES: dict[int, str] = {
    getattr(FieldDescriptor, name): name.removeprefix("TYPE_").lower()
    for name in dir(FieldDescriptor)
    if name.startswith("TYPE_")
}


def _type_name(full_name: str) -> str:
    return full_name.removeprefix(PACKAGE + ".")


def _field_type(field: FieldDescriptor) -> str:
    message = field.message_type
    if message is not None:
        if message.GetOptions().map_entry:
            key, value = (message.fields_by_name[n] for n in ("key", "value"))
            return f"map<{_field_type(key)}, {_field_type(value)}>"
        return _type_name(message.full_name)
    if field.enum_type is not None:
        return _type_name(field.enum_type.full_name)
    return _SCALAR_NAMES[field.type]


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and bool(field.message_type.GetOptions().map_entry)


def _label(field: FieldDescriptor) -> str:
    return "repeated" if field.is_repeated and not _is_map(field) else ""


def _has_option(options: Message, extension: FieldDescriptor) -> bool:
    """Whether a custom bool option (csi_secret, alpha_*) is set to true."""
    return any(
        field.is_extension and field.full_name == extension.full_name and value is True
        for field, value in options.ListFields()
    )


def _field_marks(field: FieldDescriptor) -> frozenset[str]:
    options = field.GetOptions()
    marks: set[str] = set()
    if _has_option(options, csi_pb2.csi_secret):
        marks.add("secret")
    if _has_option(options, csi_pb2.alpha_field):
        marks.add("alpha")
    return frozenset(marks)


def _message(name: str) -> Descriptor:
    head, *rest = name.split(".")
    desc: Descriptor = FILE.message_types_by_name[head]
    for part in rest:
        desc = desc.nested_types_by_name[part]
    return desc


def _all_messages() -> dict[str, Descriptor]:
    found: dict[str, Descriptor] = {}

    def walk(desc: Descriptor) -> None:
        if desc.GetOptions().map_entry:
            return
        found[_type_name(desc.full_name)] = desc
        for nested in desc.nested_types:
            walk(nested)

    for desc in FILE.message_types_by_name.values():
        walk(desc)
    return found


def _all_enums() -> dict[str, EnumDescriptor]:
    found = {_type_name(e.full_name): e for e in FILE.enum_types_by_name.values()}
    for message in _all_messages().values():
        for enum in message.enum_types:
            found[_type_name(enum.full_name)] = enum
    return found


# --------------------------------------------------------------------------- representative wire table

# (message, field, number, type, label) straight from the CSI v1.12.0 spec.
WIRE_FIELDS: list[tuple[str, str, int, str, str]] = [
    ("CreateVolumeRequest", "name", 1, "string", ""),
    ("CreateVolumeRequest", "capacity_range", 2, "CapacityRange", ""),
    ("CreateVolumeRequest", "volume_capabilities", 3, "VolumeCapability", "repeated"),
    ("CreateVolumeRequest", "parameters", 4, "map<string, string>", ""),
    ("CreateVolumeRequest", "secrets", 5, "map<string, string>", ""),
    ("CreateVolumeRequest", "volume_content_source", 6, "VolumeContentSource", ""),
    ("CreateVolumeRequest", "accessibility_requirements", 7, "TopologyRequirement", ""),
    ("CreateVolumeRequest", "mutable_parameters", 8, "map<string, string>", ""),
    ("Topology", "segments", 1, "map<string, string>", ""),
    ("TopologyRequirement", "requisite", 1, "Topology", "repeated"),
    ("TopologyRequirement", "preferred", 2, "Topology", "repeated"),
    ("VolumeCapability", "block", 1, "VolumeCapability.BlockVolume", ""),
    ("VolumeCapability", "mount", 2, "VolumeCapability.MountVolume", ""),
    ("VolumeCapability", "access_mode", 3, "VolumeCapability.AccessMode", ""),
    ("VolumeCapability.MountVolume", "fs_type", 1, "string", ""),
    ("VolumeCapability.MountVolume", "mount_flags", 2, "string", "repeated"),
    ("VolumeCapability.MountVolume", "volume_mount_group", 3, "string", ""),
    ("VolumeCapability.AccessMode", "mode", 1, "VolumeCapability.AccessMode.Mode", ""),
    ("Volume", "capacity_bytes", 1, "int64", ""),
    ("Volume", "volume_id", 2, "string", ""),
    ("Volume", "accessible_topology", 5, "Topology", "repeated"),
    ("NodeGetInfoResponse", "node_id", 1, "string", ""),
    ("NodeGetInfoResponse", "max_volumes_per_node", 2, "int64", ""),
    ("NodeGetInfoResponse", "accessible_topology", 3, "Topology", ""),
    ("ControllerModifyVolumeRequest", "volume_id", 1, "string", ""),
    ("ControllerModifyVolumeRequest", "secrets", 2, "map<string, string>", ""),
    ("ControllerModifyVolumeRequest", "mutable_parameters", 3, "map<string, string>", ""),
    ("ControllerPublishVolumeRequest", "node_id", 2, "string", ""),
    ("ControllerPublishVolumeRequest", "readonly", 4, "bool", ""),
    ("ControllerPublishVolumeResponse", "publish_context", 1, "map<string, string>", ""),
    ("NodeStageVolumeRequest", "staging_target_path", 3, "string", ""),
    ("NodePublishVolumeRequest", "target_path", 4, "string", ""),
    ("NodeExpandVolumeRequest", "secrets", 6, "map<string, string>", ""),
    ("GetCapacityResponse", "maximum_volume_size", 2, "google.protobuf.Int64Value", ""),
    ("Snapshot", "creation_time", 4, "google.protobuf.Timestamp", ""),
    ("ProbeResponse", "ready", 1, "google.protobuf.BoolValue", ""),
]


@pytest.mark.parametrize(("message", "field", "number", "type_", "label"), WIRE_FIELDS)
def test_wire_field(message: str, field: str, number: int, type_: str, label: str) -> None:
    desc = _message(message).fields_by_name[field]
    assert (desc.number, _field_type(desc), _label(desc)) == (number, type_, label)


def test_oneofs() -> None:
    access_type = _message("VolumeCapability").oneofs_by_name["access_type"]
    assert [f.name for f in access_type.fields] == ["block", "mount"]
    assert _message("VolumeCapability").fields_by_name["access_mode"].containing_oneof is None
    assert [f.name for f in _message("VolumeContentSource").oneofs_by_name["type"].fields] == [
        "snapshot",
        "volume",
    ]
    assert [f.name for f in _message("PluginCapability").oneofs_by_name["type"].fields] == [
        "service",
        "volume_expansion",
    ]


def test_secret_and_alpha_marks() -> None:
    assert _field_marks(_message("CreateVolumeRequest").fields_by_name["secrets"]) == {"secret"}
    assert _field_marks(_message("CreateVolumeRequest").fields_by_name["parameters"]) == set()
    assert _field_marks(_message("NodeExpandVolumeRequest").fields_by_name["secrets"]) == {"secret", "alpha"}
    assert csi_pb2.CSI_SECRET_FIELD_NUMBER == 1059
    assert csi_pb2.ALPHA_FIELD_FIELD_NUMBER == 1060
    snapshot_metadata = FILE.services_by_name["SnapshotMetadata"]
    assert _has_option(snapshot_metadata.GetOptions(), csi_pb2.alpha_service)
    assert all(m.server_streaming and not m.client_streaming for m in snapshot_metadata.methods)


def test_enum_numbers() -> None:
    mode = csi_pb2.VolumeCapability.AccessMode
    assert mode.SINGLE_NODE_WRITER == 1
    assert mode.MULTI_NODE_MULTI_WRITER == 5
    assert mode.SINGLE_NODE_MULTI_WRITER == 7
    rpc = csi_pb2.ControllerServiceCapability.RPC
    assert rpc.MODIFY_VOLUME == 14
    assert rpc.GET_SNAPSHOT == 15
    assert csi_pb2.PluginCapability.Service.VOLUME_ACCESSIBILITY_CONSTRAINTS == 2


def test_bytes_on_the_wire() -> None:
    response = csi_pb2.NodeGetInfoResponse(
        node_id="i-1",
        max_volumes_per_node=25,
        accessible_topology=csi_pb2.Topology(segments={"z": "a"}),
    )
    entry = b"\x0a\x01z\x12\x01a"  # map entry: key = 1, value = 2
    topology = b"\x0a" + bytes([len(entry)]) + entry  # segments = 1
    expected = b"\x0a\x03i-1" + b"\x10\x19" + b"\x1a" + bytes([len(topology)]) + topology
    assert response.SerializeToString() == expected


# --------------------------------------------------------------------------- full fact sheet


class FieldFact(NamedTuple):
    number: int
    type: str
    label: str
    oneof: str
    marks: frozenset[str]


class RpcFact(NamedTuple):
    request: str
    response: str
    streaming: str
    marks: frozenset[str]


class FactSheet(NamedTuple):
    header: str
    extensions: dict[str, tuple[str, int, str]]
    services: dict[str, tuple[bool, dict[str, RpcFact]]]
    messages: dict[str, tuple[bool, dict[str, FieldFact]]]
    enums: dict[str, tuple[bool, dict[str, tuple[int, frozenset[str]]]]]


_HEADING = re.compile(r"^#{3,4} (service|message|enum) `([\w.]+)`( \(alpha\))?\s*$")


def _cells(line: str) -> list[str]:
    return [cell.strip().strip("`") for cell in line.strip().strip("|").split("|")]


def _marks(cell: str) -> frozenset[str]:
    return frozenset(part.strip() for part in cell.split(",") if part.strip())


def _parse_fact_sheet(text: str) -> FactSheet:
    sheet = FactSheet(text.split("## Services")[0], {}, {}, {}, {})
    kind, name = "", ""
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            kind, name, alpha = heading.group(1), heading.group(2), bool(heading.group(3))
            if kind == "service":
                sheet.services[name] = (alpha, {})
            elif kind == "message":
                sheet.messages[name] = (alpha, {})
            else:
                sheet.enums[name] = (alpha, {})
            continue
        if line.startswith("| extension |"):
            kind = "extension"
            continue
        if not line.startswith("| `"):  # not a data row (headers and rules are not backticked)
            continue
        cells = _cells(line)
        if kind == "extension":
            sheet.extensions[cells[0]] = (cells[1], int(cells[2]), cells[3])
        elif kind == "service":
            sheet.services[name][1][cells[0]] = RpcFact(cells[1], cells[2], cells[3], _marks(cells[4]))
        elif kind == "message":
            fact = FieldFact(int(cells[1]), cells[2], cells[3], cells[4], _marks(cells[5]))
            sheet.messages[name][1][cells[0]] = fact
        elif kind == "enum":
            sheet.enums[name][1][cells[0]] = (int(cells[1]), _marks(cells[2]))
    return sheet


def _streaming(server: bool, client: bool) -> str:
    return {(False, False): "", (True, False): "server", (False, True): "client"}.get(
        (server, client), "bidi"
    )


def _compare(errors: list[str], what: str, expected: object, actual: object) -> None:
    if expected != actual:
        errors.append(f"{what}: fact sheet {expected!r}, csi.proto {actual!r}")


def test_matches_fact_sheet() -> None:
    text = FACT_SHEET.read_text(encoding="utf-8")
    sheet = _parse_fact_sheet(text)
    # Guard against a parser that silently skips sections.
    assert len(sheet.services) == text.count("\n### service `") == 5
    assert len(sheet.messages) == text.count("\n### message `") > 90
    assert len(sheet.enums) == text.count("\n#### enum `") > 5
    assert len(sheet.extensions) == 7
    field_rows = sum(len(fields) for _, fields in sheet.messages.values())
    assert field_rows == len(re.findall(r"^\| `\w+` \| \d+ \| `", text, re.M)) > 150

    errors: list[str] = []

    # File-level facts.
    header_ticks = set(re.findall(r"`([^`]+)`", sheet.header.split("Custom options")[0]))
    file_proto = descriptor_pb2.FileDescriptorProto()
    FILE.CopyToProto(file_proto)
    _compare(errors, "package", True, file_proto.package in header_ticks)
    _compare(errors, "syntax", True, file_proto.syntax in header_ticks)
    _compare(errors, "imports", True, set(file_proto.dependency) <= header_ticks)
    _compare(errors, "go_package", True, file_proto.options.go_package in header_ticks)
    _compare(errors, "import count", 3, len(file_proto.dependency))

    # Custom options.
    actual_ext = {
        name: (
            ext.containing_type.full_name if ext.containing_type else "",
            ext.number,
            _SCALAR_NAMES[ext.type],
        )
        for name, ext in FILE.extensions_by_name.items()
    }
    _compare(errors, "extensions", sheet.extensions, actual_ext)

    # Services and rpcs.
    _compare(errors, "services", sorted(sheet.services), sorted(FILE.services_by_name))
    for service_name, (alpha, rpcs) in sheet.services.items():
        service = FILE.services_by_name.get(service_name)
        if service is None:
            continue
        _compare(
            errors, f"{service_name} alpha", alpha, _has_option(service.GetOptions(), csi_pb2.alpha_service)
        )
        actual_rpcs = {
            m.name: RpcFact(
                _type_name(m.input_type.full_name if m.input_type else ""),
                _type_name(m.output_type.full_name if m.output_type else ""),
                _streaming(m.server_streaming, m.client_streaming),
                frozenset({"alpha"}) if _has_option(m.GetOptions(), csi_pb2.alpha_method) else frozenset(),
            )
            for m in service.methods
        }
        _compare(errors, f"{service_name} rpcs", sorted(rpcs), sorted(actual_rpcs))
        for rpc_name, fact in rpcs.items():
            _compare(errors, f"{service_name}.{rpc_name}", fact, actual_rpcs.get(rpc_name))

    # Messages and fields.
    messages = _all_messages()
    _compare(errors, "messages", sorted(sheet.messages), sorted(messages))
    for message_name, (alpha, fields) in sheet.messages.items():
        message = messages.get(message_name)
        if message is None:
            continue
        _compare(
            errors, f"{message_name} alpha", alpha, _has_option(message.GetOptions(), csi_pb2.alpha_message)
        )
        actual_fields = {
            f.name: FieldFact(
                f.number,
                _field_type(f),
                _label(f),
                f.containing_oneof.name if f.containing_oneof is not None else "",
                _field_marks(f),
            )
            for f in message.fields
        }
        _compare(errors, f"{message_name} fields", sorted(fields), sorted(actual_fields))
        for field_name, field_fact in fields.items():
            _compare(errors, f"{message_name}.{field_name}", field_fact, actual_fields.get(field_name))

    # Enums and values.
    enums = _all_enums()
    _compare(errors, "enums", sorted(sheet.enums), sorted(enums))
    for enum_name, (alpha, values) in sheet.enums.items():
        enum = enums.get(enum_name)
        if enum is None:
            continue
        _compare(errors, f"{enum_name} alpha", alpha, _has_option(enum.GetOptions(), csi_pb2.alpha_enum))
        actual_values = {
            v.name: (
                v.number,
                frozenset({"alpha"})
                if _has_option(v.GetOptions(), csi_pb2.alpha_enum_value)
                else frozenset(),
            )
            for v in enum.values
        }
        _compare(errors, f"{enum_name} values", sorted(values), sorted(actual_values))
        for value_name, value_fact in values.items():
            _compare(errors, f"{enum_name}.{value_name}", value_fact, actual_values.get(value_name))

    assert not errors, "csi.proto disagrees with the CSI v1.12.0 fact sheet:\n" + "\n".join(errors)
