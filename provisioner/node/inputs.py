"""What a client may send the Node service, checked before the kernel or a command sees any of it.

Every rule here turns a bad field into INVALID_ARGUMENT (CSI: "Invalid or unsupported field") with
a short message that quotes at most ~100 characters of the input (:func:`provisioner.errors.shown`):

- ids: required, at most 128 bytes (CSI's string limit), no NUL or control character;
- paths: required, absolute, at most 4095 bytes, components at most 255 bytes, no ``..``, no NUL or
  control character; ``//`` and ``.`` are normalised away; ``/`` itself is refused. NodeGetVolumeStats
  and NodeExpandVolume answer a relative path with NOT_FOUND instead (CSI sanity: "some/path" does not
  exist);
- mount flags: one option per flag (no commas, quotes or blanks, except SELinux ``context="…"``
  values, which kubelet sends quoted), at most 64 flags of 256 bytes; refused are options that change
  *what* is mounted or *where* (``bind``, ``rbind``, ``move``, ``remount``, ``loop``, ``offset``,
  ``sizelimit``, ``encryption``, propagation such as ``shared``/``private``), that point the
  filesystem at another device or file (``journal_path``, ``journal_dev``, ``logdev``, ``rtdev``,
  ``usrjquota``, ``grpjquota``), and util-linux's own ``X-``/``x-`` options (``X-mount.mkdir``…);
- volume_context mkfs options (the keys aws-ebs-csi-driver StorageClasses use): decimal integers in
  the ranges mkfs accepts, only for the fs types that have them.

Pure functions: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from provisioner.errors import FailedPrecondition, InvalidArgument, NotFound, shown
from provisioner.model import AccessMode, AccessType, VolumeCapability
from provisioner.ports.node import DEFAULT_FS_TYPE, SUPPORTED_FS_TYPES, FormatOptions

MAX_ID_BYTES = 128
MAX_PATH_BYTES = 4095
MAX_NAME_BYTES = 255
MAX_FLAGS = 64
MAX_FLAG_BYTES = 256
MAX_FLAGS_TOTAL = 3072  # all flags joined; the kernel takes at most a page of options

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_DIGITS = re.compile(r"[0-9]{1,12}")

_SINGLE_NODE_MODES = frozenset(
    {
        AccessMode.SINGLE_NODE_WRITER,
        AccessMode.SINGLE_NODE_READER_ONLY,
        AccessMode.SINGLE_NODE_SINGLE_WRITER,
        AccessMode.SINGLE_NODE_MULTI_WRITER,
    }
)
READ_ONLY_MODES = frozenset({AccessMode.SINGLE_NODE_READER_ONLY, AccessMode.MULTI_NODE_READER_ONLY})

_DENIED_FLAGS = frozenset(
    {"bind", "rbind", "move", "remount", "loop", "offset", "sizelimit", "encryption"}
    | {"shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable"}
    | {"journal_path", "journal_dev", "logdev", "rtdev", "usrjquota", "grpjquota"}
)
_SELINUX_FLAGS = frozenset({"context", "fscontext", "defcontext", "rootcontext"})

# volume_context keys carrying mkfs options: attribute, fs types, smallest, largest, power of two.
_FORMAT_KEYS: dict[str, tuple[str, frozenset[str], int, int, bool]] = {
    "blocksize": ("block_size", frozenset({"ext3", "ext4", "xfs"}), 1024, 65536, True),
    "inodesize": ("inode_size", frozenset({"ext3", "ext4", "xfs"}), 128, 32768, True),
    "bytesperinode": ("bytes_per_inode", frozenset({"ext3", "ext4"}), 1024, 1 << 26, False),
    "numberofinodes": ("number_of_inodes", frozenset({"ext3", "ext4"}), 1, (1 << 32) - 1, False),
    "ext4clustersize": ("ext4_cluster_size", frozenset({"ext4"}), 1024, 1 << 29, True),
}
_BIGALLOC_KEY = "ext4bigalloc"
# Boolean ext4 features: volume_context key → FormatOptions field.
_EXT4_FEATURES = {_BIGALLOC_KEY: "ext4_bigalloc", "ext4encryptionsupport": "ext4_encrypt"}


def _printable(value: str, what: str) -> None:
    if _CONTROL.search(value):
        raise InvalidArgument(f"{what} {shown(value)} contains a NUL or control character")


def volume_id(value: str) -> str:
    """A syntactically valid volume id (whether such a volume exists is the resolver's business)."""
    if not value:
        # CSI: a missing required field → INVALID_ARGUMENT, checked before anything else.
        raise InvalidArgument("volume_id is required")
    _printable(value, "volume_id")
    size = len(value.encode())
    if size > MAX_ID_BYTES:
        raise InvalidArgument(f"volume_id {shown(value)} is {size} bytes; CSI allows {MAX_ID_BYTES}")
    return value


def path(value: str, what: str, relative_is_not_found: bool = False) -> str:
    """``value`` normalised (see the module docstring) or InvalidArgument/NotFound."""
    if not value:
        raise InvalidArgument(f"{what} is required")
    _printable(value, what)
    size = len(value.encode())
    if size > MAX_PATH_BYTES:
        raise InvalidArgument(f"{what} {shown(value)} is {size} bytes; Linux paths hold {MAX_PATH_BYTES}")
    if not value.startswith("/"):
        if relative_is_not_found:
            # CSI NodeGetVolumeStats/NodeExpandVolume: "Volume does not exist" → NOT_FOUND.
            raise NotFound(f"{what} {shown(value)} does not exist: not an absolute path")
        raise InvalidArgument(f"{what} {shown(value)} must be an absolute path")
    names = []
    for name in value.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            raise InvalidArgument(f"{what} {shown(value)} must not contain '..'")
        if len(name.encode()) > MAX_NAME_BYTES:
            raise InvalidArgument(f"{what} has a component {shown(name)} longer than {MAX_NAME_BYTES} bytes")
        names.append(name)
    if not names:
        raise InvalidArgument(f"{what} must not be the root directory")
    return "/" + "/".join(names)


def apart(target_path: str, staging_path: str) -> None:
    """Refuse a target that is, or nests with, the staging path (normalised): binding the volume onto
    or inside its own staging mount pins that mount, and NodeUnstage could never unmount it."""
    for outer, inner in ((staging_path, target_path), (target_path, staging_path)):
        if inner == outer or inner.startswith(outer + "/"):
            raise InvalidArgument(
                f"target_path {shown(target_path)} must lie outside staging_target_path "
                f"{shown(staging_path)} and not contain it"
            )


def capability(cap: VolumeCapability | None) -> VolumeCapability:
    if cap is None:
        raise InvalidArgument("volume_capability is required")
    if cap.access_mode == AccessMode.UNKNOWN:
        raise InvalidArgument("volume_capability access mode is required")
    multi_attach_block = (
        cap.access_type == AccessType.BLOCK and cap.access_mode == AccessMode.MULTI_NODE_MULTI_WRITER
    )
    if cap.access_mode not in _SINGLE_NODE_MODES and not multi_attach_block:
        # CSI NodeStage/NodePublish: "Exceeds capabilities" → FAILED_PRECONDITION.
        raise FailedPrecondition(
            f"access mode {cap.access_mode.name} is not supported for {cap.access_type.value} volumes"
        )
    return cap


def fs_type(cap: VolumeCapability) -> str:
    value = (cap.fs_type or DEFAULT_FS_TYPE).lower()
    if value not in SUPPORTED_FS_TYPES:
        raise InvalidArgument(
            f"fs type {shown(cap.fs_type)} is not supported; use one of {', '.join(SUPPORTED_FS_TYPES)}"
        )
    return value


def mount_flags(flags: Sequence[str]) -> tuple[str, ...]:
    """The flags, deduplicated in order, or InvalidArgument naming the first bad one."""
    if len(flags) > MAX_FLAGS:
        raise InvalidArgument(f"{len(flags)} mount flags; at most {MAX_FLAGS} are accepted")
    for flag in flags:
        if not flag:
            raise InvalidArgument("a mount flag is empty")
        _printable(flag, "mount flag")
        if len(flag.encode()) > MAX_FLAG_BYTES:
            raise InvalidArgument(f"mount flag {shown(flag)} is longer than {MAX_FLAG_BYTES} bytes")
        name, _, value = flag.partition("=")
        key = name.lower()
        quoted = (
            key in _SELINUX_FLAGS
            and len(value) >= 2
            and value[0] == value[-1] == '"'
            and '"' not in value[1:-1]
        )
        plain = name if quoted else flag  # commas inside a quoted SELinux label are its own
        if "," in plain or '"' in plain or any(c.isspace() for c in flag):
            raise InvalidArgument(
                f"mount flag {shown(flag)} must be a single option: no commas, quotes or blanks"
            )
        if key in _DENIED_FLAGS or key.startswith("x-"):
            raise InvalidArgument(
                f"mount flag {shown(flag)} is not allowed: it would change what is mounted, where, "
                "or which other device or file the filesystem uses"
            )
    unique = tuple(dict.fromkeys(flags))
    if sum(len(f.encode()) + 1 for f in unique) > MAX_FLAGS_TOTAL:
        raise InvalidArgument(f"mount flags are longer than {MAX_FLAGS_TOTAL} bytes together")
    return unique


def mount_options(cap: VolumeCapability, fs: str) -> tuple[str, ...]:
    options = list(mount_flags(cap.mount_flags))
    # xfs refuses two filesystems with the same UUID (a volume and its clone or restored snapshot).
    if fs == "xfs" and "nouuid" not in options:
        options.append("nouuid")
    return tuple(options)


def format_options(fs: str, volume_context: Mapping[str, str]) -> FormatOptions:
    """mkfs options from ``volume_context``; an option the fs type cannot take → InvalidArgument."""
    values: dict[str, int | bool] = {}
    for key, (attr, fs_types, low, high, power_of_two) in _FORMAT_KEYS.items():
        raw = volume_context.get(key)
        if raw is None:
            continue
        # Re-checked here although the controller validated it: these reach a command line, and a
        # static PV's volumeAttributes never passed the controller.
        if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
            raise InvalidArgument(
                f"volume_context {key} must be an integer from {low} to {high}, not {shown(raw)}"
            )
        number = int(raw)
        if power_of_two and number & (number - 1):
            raise InvalidArgument(f"volume_context {key} must be a power of two, not {number}")
        if fs not in fs_types:
            raise InvalidArgument(f"volume_context {key} cannot be used with fs type {fs}")
        values[attr] = number
    for key, attr in _EXT4_FEATURES.items():
        raw_flag = volume_context.get(key)
        if raw_flag is None:
            continue
        if raw_flag.lower() not in ("true", "false"):
            raise InvalidArgument(f"volume_context {key} must be true or false, not {shown(raw_flag)}")
        if raw_flag.lower() == "true":
            if fs != "ext4":
                raise InvalidArgument(f"volume_context {key} cannot be used with fs type {fs}")
            values[attr] = True
    inode_size, block_size = values.get("inode_size"), values.get("block_size")
    if fs == "xfs" and inode_size and not 512 <= int(inode_size) <= 2048:
        # mkfs.xfs (v5, with metadata checksums) takes 512-2048-byte inodes.
        raise InvalidArgument(f"volume_context inodesize must be 512-2048 for xfs, not {inode_size}")
    if fs != "xfs" and inode_size and int(inode_size) > int(block_size or 4096):
        raise InvalidArgument(f"volume_context inodesize {inode_size} is larger than the block size")
    if "ext4_cluster_size" in values and not values.get("ext4_bigalloc"):
        raise InvalidArgument("volume_context ext4clustersize needs ext4bigalloc=true")
    return FormatOptions(**values)  # type: ignore[arg-type]
