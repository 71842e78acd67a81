"""Paths walked one component at a time, never through a symlink.

A CSI path comes from the client. ``os.makedirs``, ``mount`` and ``umount`` follow symlinks anywhere
in a path, so a symlink planted at (or above) a target would send a mount, an unmount or a delete
somewhere else. Here every component is opened relative to its parent with
``O_PATH | O_NOFOLLOW`` and checked with ``fstat``; a symlink or a non-directory on the way stops the
walk (:class:`Blocked`). Commands then get ``/proc/self/fd/N`` paths of the descriptors the walk
opened (passed with ``pass_fds``), so what they act on is exactly what was checked.

This module reads and changes the filesystem tree only; it runs no command and knows no policy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from provisioner.errors import FailedPrecondition, NotFound, shown
from provisioner.ports.node import PathKind

_DIR_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_COUNTED = 1000  # a directory's entries are counted up to this many


class Blocked(FailedPrecondition):
    """A component on the way is a symlink or not a directory: the walk stops there."""

    def __init__(self, component: str, why: str) -> None:
        super().__init__(f"{shown(component)} is {why}; zonal never follows symlinks or walks through files")
        self.component = component
        self.why = why


class Missing(NotFound):
    """A component on the way does not exist."""

    def __init__(self, component: str) -> None:
        super().__init__(f"{shown(component)} does not exist")
        self.component = component


def components(path: str) -> list[str]:
    """The names of an absolute, normalised path ("/a/b" → ["a", "b"])."""
    return [c for c in path.split("/") if c]


def kind_of(mode: int) -> PathKind:
    if stat.S_ISDIR(mode):
        return PathKind.DIRECTORY
    if stat.S_ISREG(mode):
        return PathKind.FILE
    if stat.S_ISBLK(mode):
        return PathKind.BLOCK_DEVICE
    if stat.S_ISLNK(mode):
        return PathKind.SYMLINK
    return PathKind.OTHER


def _describe(kind: PathKind) -> str:
    return "a symlink" if kind is PathKind.SYMLINK else f"a {kind.value}, not a directory"


def fd_path(fd: int, name: str = "") -> str:
    """The path a child process (given ``fd`` in ``pass_fds``) uses for ``fd`` (and ``name`` in it)."""
    return f"/proc/self/fd/{fd}/{name}" if name else f"/proc/self/fd/{fd}"


@dataclass
class Parent:
    """The open parent directory of a path and the path's last component."""

    fd: int
    name: str
    path: str


@contextlib.contextmanager
def parent_of(path: str, create: list[str] | None = None) -> Iterator[Parent]:
    """Open every directory above ``path`` without following symlinks. With ``create`` (a list),
    missing directories are made (mode 0750) and appended to it; otherwise a missing one raises
    :class:`Missing`. A symlink or non-directory on the way raises :class:`Blocked`."""
    names = components(path)
    if not names:
        raise Blocked("/", "the root directory")
    fd = os.open("/", _DIR_FLAGS | os.O_DIRECTORY)
    walked = ""
    try:
        for name in names[:-1]:
            walked += "/" + name
            child = _step(fd, name, walked, create)
            os.close(fd)
            fd = child
        yield Parent(fd, names[-1], path)
    finally:
        os.close(fd)


def _step(fd: int, name: str, walked: str, create: list[str] | None) -> int:
    """Open directory ``name`` under ``fd`` and return its descriptor (``fd`` stays open)."""
    try:
        try:
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if create is None:
                raise Missing(walked) from None
            try:
                os.mkdir(name, 0o750, dir_fd=fd)
                create.append(walked)
            except FileExistsError:
                pass  # made meanwhile: checked below like any other
            child = os.open(name, _DIR_FLAGS, dir_fd=fd)
        mode = os.fstat(child).st_mode
        if not stat.S_ISDIR(mode):
            os.close(child)
            raise Blocked(walked, _describe(kind_of(mode)))
        return child
    except OSError as e:
        if e.errno == errno.ENOTDIR:
            raise Blocked(walked, "not a directory") from e
        raise FailedPrecondition(f"cannot open {shown(walked)}: {e.strerror}") from e


@dataclass(frozen=True)
class Found:
    kind: PathKind
    entries: int = 0
    rdev: str = ""
    file_id: str = ""


def look(path: str) -> Found:
    """What is at ``path`` (Blocked/Missing propagate from the walk above it)."""
    with parent_of(path) as parent:
        try:
            st = os.stat(parent.name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            return Found(PathKind.MISSING)
        kind = kind_of(st.st_mode)
        file_id = f"{st.st_dev}:{st.st_ino}"
        if kind is PathKind.DIRECTORY:
            return Found(kind, _count_entries(parent), file_id=file_id)
        if kind is PathKind.FILE:
            return Found(kind, st.st_size, file_id=file_id)
        if kind is PathKind.BLOCK_DEVICE:
            return Found(kind, rdev=f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}", file_id=file_id)
        return Found(kind, file_id=file_id)


def _count_entries(parent: Parent) -> int:
    try:
        fd = os.open(
            parent.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent.fd
        )
    except OSError:
        return 0  # not listable (e.g. a bound device): nothing to count
    try:
        count = 0
        with os.scandir(fd) as it:
            for _ in it:
                count += 1
                if count >= _MAX_COUNTED:
                    break
        return count
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened(path: str, want: PathKind) -> Iterator[int]:
    """An ``O_PATH`` descriptor of ``path`` itself, which must be a ``want`` (not a symlink)."""
    with parent_of(path) as parent:
        try:
            fd = os.open(parent.name, _DIR_FLAGS, dir_fd=parent.fd)
        except FileNotFoundError:
            raise Missing(path) from None
        try:
            kind = kind_of(os.fstat(fd).st_mode)
            if kind is not want:
                raise Blocked(path, f"a {kind.value}, not a {want.value}")
            yield fd
        finally:
            os.close(fd)


def make_dirs(path: str) -> tuple[str, ...]:
    """Create ``path`` and its missing parents; the directories created, outermost first."""
    created: list[str] = []
    with parent_of(path, create=created) as parent:
        try:
            os.mkdir(parent.name, 0o750, dir_fd=parent.fd)
            created.append(path)
        except FileExistsError:
            pass
        except OSError as e:
            raise FailedPrecondition(f"cannot create {shown(path)}: {e.strerror}") from e
        mode = os.stat(parent.name, dir_fd=parent.fd, follow_symlinks=False).st_mode
        if not stat.S_ISDIR(mode):
            raise Blocked(path, _describe(kind_of(mode)))
    return tuple(created)


def make_file(path: str) -> str:
    """Create an empty regular file at ``path`` (never through a symlink); its file id."""
    with parent_of(path) as parent:
        try:
            fd = os.open(
                parent.name,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o640,
                dir_fd=parent.fd,
            )
        except FileExistsError as e:
            raise FailedPrecondition(f"{shown(path)} already exists") from e
        except OSError as e:
            raise FailedPrecondition(f"cannot create {shown(path)}: {e.strerror}") from e
        try:
            st = os.fstat(fd)
            return f"{st.st_dev}:{st.st_ino}"
        finally:
            os.close(fd)


def remove_dir(path: str) -> None:
    """``rmdir`` exactly ``path`` (a symlink there is refused by the kernel: ENOTDIR)."""
    with parent_of(path) as parent:
        try:
            os.rmdir(parent.name, dir_fd=parent.fd)
        except FileNotFoundError:
            return
        except OSError as e:
            raise FailedPrecondition(f"cannot remove {shown(path)}: {e.strerror}") from e


def remove_file(path: str, file_id: str) -> bool:
    """Unlink ``path`` only if it is the empty regular file ``file_id``; whether it did."""
    with parent_of(path) as parent:
        try:
            st = os.stat(parent.name, dir_fd=parent.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_size or f"{st.st_dev}:{st.st_ino}" != file_id:
            return False
        os.unlink(parent.name, dir_fd=parent.fd)
        return True
