"""sparse_copy: the copy a snapshot and a restore are made of keeps holes as holes and is all or
nothing (no root needed)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from provisioner.embedded.loopback import sparse_copy

MIB = 1024**2


def _sparse_file(path: Path, size: int, writes: dict[int, bytes]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in writes.items():
            f.seek(offset)
            f.write(data)


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def test_data_is_copied_and_holes_stay_holes(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    _sparse_file(source, 64 * MIB, {0: b"first" * 1000, 10 * MIB: b"second" * 1000, 63 * MIB: b"last"})

    copied = sparse_copy(source, target)

    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_size == 64 * MIB
    assert 0 < copied < MIB
    assert _allocated(target) < MIB  # not 64 MiB of written zeros


def test_a_trailing_hole_keeps_the_size(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    _sparse_file(source, 32 * MIB, {4096: b"data"})

    sparse_copy(source, target)

    assert target.stat().st_size == 32 * MIB
    with open(target, "rb") as f:
        f.seek(4096)
        assert f.read(4) == b"data"


def test_a_file_of_holes_copies_nothing(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    _sparse_file(source, 16 * MIB, {})

    assert sparse_copy(source, target) == 0
    assert target.stat().st_size == 16 * MIB
    assert _allocated(target) == 0


def test_a_file_without_holes_is_copied_whole(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    data = os.urandom(3 * MIB + 17)
    source.write_bytes(data)

    assert sparse_copy(source, target) == len(data)
    assert target.read_bytes() == data


def test_an_existing_target_is_refused_and_kept(tmp_path: Path) -> None:
    source, target = tmp_path / "src", tmp_path / "dst"
    _sparse_file(source, MIB, {0: b"new"})
    target.write_bytes(b"old")

    with pytest.raises(FileExistsError):
        sparse_copy(source, target)

    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "src"]  # no partial file left


def test_without_copy_file_range_it_reads_and_writes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refuse)
    source, target = tmp_path / "src", tmp_path / "dst"
    _sparse_file(source, 8 * MIB, {MIB: os.urandom(5000)})

    sparse_copy(source, target)

    assert target.read_bytes() == source.read_bytes()
    assert _allocated(target) < MIB
