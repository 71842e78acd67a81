"""The symlink-free path walk (provisioner.mount.paths) and the node state folder (mount.state)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from provisioner.errors import FailedPrecondition
from provisioner.mount import paths
from provisioner.mount.state import FileNodeState
from provisioner.ports.node import FormatMarker, PathKind, PathRecord


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "file").write_text("data")
    (tmp_path / "empty").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "keep").write_text("keep")
    (tmp_path / "link").symlink_to(tmp_path / "outside")
    return tmp_path


def test_look_tells_what_is_there_without_following(tree: Path) -> None:
    assert paths.look(str(tree / "dir")).kind is PathKind.DIRECTORY
    assert paths.look(str(tree / "dir")).entries == 2
    assert paths.look(str(tree / "empty")).entries == 0
    found = paths.look(str(tree / "dir" / "file"))
    assert (found.kind, found.entries) == (PathKind.FILE, 4) and found.file_id
    assert paths.look(str(tree / "link")).kind is PathKind.SYMLINK
    assert paths.look(str(tree / "missing")).kind is PathKind.MISSING
    with pytest.raises(paths.Blocked, match="is a symlink"):
        paths.look(str(tree / "link" / "keep"))
    with pytest.raises(paths.Blocked, match="regular file"):
        paths.look(str(tree / "dir" / "file" / "x"))
    with pytest.raises(paths.Missing):
        paths.look(str(tree / "missing" / "x"))


def test_make_dirs_creates_only_below_real_directories(tree: Path) -> None:
    target = tree / "new" / "deeper" / "leaf"
    assert paths.make_dirs(str(target)) == (str(tree / "new"), str(target.parent), str(target))
    assert paths.make_dirs(str(target)) == ()  # already there
    with pytest.raises(paths.Blocked):
        paths.make_dirs(str(tree / "link" / "made"))
    assert sorted(os.listdir(tree / "outside")) == ["keep"]
    with pytest.raises(paths.Blocked):
        paths.make_dirs(str(tree / "link"))
    with pytest.raises(paths.Blocked):
        paths.make_dirs(str(tree / "dir" / "file"))


def test_files_are_made_and_removed_only_as_zonal_made_them(tree: Path) -> None:
    target = str(tree / "dir" / "block-target")
    file_id = paths.make_file(target)
    with pytest.raises(FailedPrecondition, match="already exists"):
        paths.make_file(target)
    with pytest.raises(FailedPrecondition):
        paths.make_file(str(tree / "link"))  # never through (or over) a symlink
    assert not paths.remove_file(str(tree / "dir" / "file"), file_id)  # another file: kept
    Path(target).write_text("written since")
    assert not paths.remove_file(target, file_id)  # no longer empty: kept
    Path(target).write_text("")
    assert paths.remove_file(target, file_id) and not os.path.exists(target)


def test_remove_dir_removes_only_an_empty_directory_and_never_a_symlinks_target(tree: Path) -> None:
    paths.remove_dir(str(tree / "empty"))
    assert not (tree / "empty").exists()
    paths.remove_dir(str(tree / "empty"))  # gone: fine
    with pytest.raises(FailedPrecondition):
        paths.remove_dir(str(tree / "dir"))
    with pytest.raises(FailedPrecondition):
        paths.remove_dir(str(tree / "link"))
    assert (tree / "outside" / "keep").exists() and (tree / "link").is_symlink()


def test_opened_refuses_the_wrong_kind(tree: Path) -> None:
    with paths.opened(str(tree / "dir"), PathKind.DIRECTORY) as fd:
        assert os.path.samestat(os.fstat(fd), os.stat(tree / "dir"))
    for path in ("link", "dir/file"):
        with pytest.raises(paths.Blocked), paths.opened(str(tree / path), PathKind.DIRECTORY):
            pass


def test_state_records_round_trip_and_survive_a_new_instance(tmp_path: Path) -> None:
    state = FileNodeState(tmp_path / "state")
    record = PathRecord("vol-0abc", "/var/lib/kubelet/x", "staging", "259:1", "/dev/nvme1n1", ("/a",), "")
    state.remember(record)
    assert FileNodeState(tmp_path / "state").recall("/var/lib/kubelet/x") == record
    assert state.recall("/var/lib/kubelet/y") is None
    state.forget("/var/lib/kubelet/x")
    state.forget("/var/lib/kubelet/x")
    assert state.recall("/var/lib/kubelet/x") is None
    marker = FormatMarker("vol-0abc", "/dev/nvme1n1", "259:1", "serial vol0abc", "ext4")
    state.begin_format(marker)
    assert FileNodeState(tmp_path / "state").format_started("vol-0abc") == marker
    state.end_format("vol-0abc")
    assert state.format_started("vol-0abc") is None
    assert state.format_started("../../etc/passwd") is None
    assert not list((tmp_path / "state").rglob("*.tmp"))


def test_an_unreadable_record_counts_as_none(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = FileNodeState(tmp_path)
    state.remember(PathRecord("vol-0abc", "/p", "target", "259:1"))
    [file] = (tmp_path / "paths").iterdir()
    file.write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert state.recall("/p") is None
    assert "unreadable" in caplog.text
    file.write_text(json.dumps({"volume_id": "vol-0abc"}))
    assert state.recall("/p") is None
    file.write_text(json.dumps({"volume_id": "v", "path": "/other", "kind": "t", "major_minor": "1:1"}))
    assert state.recall("/p") is None  # a record must name the path it is filed under


def test_a_state_that_cannot_be_written_refuses(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    state = FileNodeState(tmp_path / "file" / "state")
    with pytest.raises(FailedPrecondition, match="cannot write node state"):
        state.remember(PathRecord("vol-0abc", "/p", "target", "259:1"))
