"""Node-side aws-ebs-csi-driver keys: ext4EncryptionSupport (mkfs -O encrypt, on a real filesystem) and
--reserved-volume-attachments beside --volume-attach-limit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioner.errors import InvalidArgument
from provisioner.mount.linux import LinuxMounter
from provisioner.node import format_options
from provisioner.node_metadata import max_volumes
from provisioner.ports.node import FormatOptions, NodeMetadata

M5 = NodeMetadata("i-0", "us-east-1a", "m5.large", block_device_count=3, eni_count=2)


def test_ext4_encryption_support_makes_an_encrypt_capable_filesystem(tmp_path: Path) -> None:
    image = tmp_path / "volume.img"
    with image.open("wb") as f:
        f.truncate(64 * 1024 * 1024)
    options = format_options("ext4", {"ext4encryptionsupport": "true", "ext4bigalloc": "true"})
    assert options == FormatOptions(ext4_bigalloc=True, ext4_encrypt=True)
    LinuxMounter().format(str(image), "ext4", options)  # a regular file: no device, no root needed
    header = subprocess.run(["dumpe2fs", "-h", str(image)], capture_output=True, text=True, check=True).stdout
    features = next(line for line in header.splitlines() if line.startswith("Filesystem features:")).split()
    assert "encrypt" in features and "bigalloc" in features


@pytest.mark.parametrize("fs_type", ["xfs", "ext3"])
def test_ext4_encryption_support_is_ext4_only(fs_type: str) -> None:
    with pytest.raises(InvalidArgument, match="ext4encryptionsupport cannot be used with fs type"):
        format_options(fs_type, {"ext4encryptionsupport": "true"})


def test_false_asks_for_nothing() -> None:
    assert format_options("ext4", {"ext4encryptionsupport": "false"}) == FormatOptions()


def test_reserved_attachments_replace_the_devices_counted_at_start() -> None:
    assert max_volumes(M5) == 28 - 2 - 3
    assert max_volumes(M5, reserved=0) == 28 - 2
    assert max_volumes(M5, reserved=30) == 1  # never below one
    assert max_volumes(M5, explicit_limit=9, reserved=5) == 9  # the explicit limit wins, as documented
