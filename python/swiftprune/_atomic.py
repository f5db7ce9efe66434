"""Atomic file replacement for the writers implemented in Python (.npz, .h5).

The same rules as the Swift safetensors writer (``TemporaryFile.swift``):

- the new file is written beside the destination and renamed over it, after
  ``fsync``, so a reader sees the old file or the complete new one;
- on Linux the file is created with ``O_TMPFILE`` where the file system
  allows it: it has no name until it is complete, so a process killed while
  writing leaves nothing behind; otherwise it is named
  ``.NAME.<pid>.<n>.tmp``, and every write to ``NAME`` first removes such
  files whose process no longer runs;
- the new file keeps the mode (and, where permitted, the owner) of the file
  it replaces; a destination that is a symbolic link is written through to
  its target, so the link stays.
"""
from __future__ import annotations

import itertools
import os
import re
import stat
from contextlib import contextmanager
from typing import BinaryIO, Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]

_counter = itertools.count()


def resolve_destination(path: PathLike) -> str:
    """``path`` with symbolic links followed (a dangling link: where its target would be)."""
    return os.path.realpath(os.fspath(path))


def _temporary_name(destination: str) -> str:
    directory, name = os.path.split(destination)
    return os.path.join(directory, f".{name}.{os.getpid()}.{next(_counter)}.tmp")


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(destination: str) -> None:
    """Removes ``.NAME.<pid>.<n>.tmp`` beside ``destination`` left by dead processes."""
    directory, name = os.path.split(destination)
    pattern = re.compile(r"\." + re.escape(name) + r"\.(\d+)\.(\d+)\.tmp\Z")
    try:
        entries = os.scandir(directory or ".")
    except OSError:
        return
    with entries:
        for entry in entries:
            match = pattern.match(entry.name)
            if match is None:
                continue
            pid = int(match.group(1))
            if pid <= 0 or pid == os.getpid() or _process_exists(pid):
                continue
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def _keep_mode(fd: int, destination: str) -> None:
    """Gives ``fd`` the owner and permission bits of an existing ``destination``."""
    try:
        info = os.stat(destination)
    except OSError:
        return
    if not stat.S_ISREG(info.st_mode):
        return
    try:
        os.fchown(fd, info.st_uid, info.st_gid)
    except (OSError, AttributeError):
        pass
    os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o777)


def _new_file_mode(fd: int) -> None:
    """0666 minus the umask, as ``open`` would give a new file."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def _fsync_directory(directory: str) -> None:
    try:
        dir_fd = os.open(directory or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _open_anonymous(directory: str) -> int | None:
    """An ``O_TMPFILE`` descriptor in ``directory``, or None where unsupported."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory or ".", flag | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError:
        return None


def _publish(fd: int, named: str | None, destination: str) -> None:
    """fsync, keep the old file's mode, (link,) rename over ``destination``."""
    if os.path.exists(destination):
        _keep_mode(fd, destination)
    else:
        _new_file_mode(fd)
    os.fsync(fd)
    linked = named
    try:
        if linked is None:
            # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N names the anonymous file.
            # (os.link calls plain link(2), which does not follow, unless a dir fd is given.)
            dir_fd = os.open(os.path.dirname(destination) or ".", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            try:
                while linked is None:
                    candidate = _temporary_name(destination)
                    try:
                        os.link(f"/proc/self/fd/{fd}", os.path.basename(candidate), dst_dir_fd=dir_fd,
                                follow_symlinks=True)
                        linked = candidate
                    except FileExistsError:
                        continue
            finally:
                os.close(dir_fd)
        os.replace(linked, destination)
        linked = None
    finally:
        if linked is not None:
            try:
                os.unlink(linked)
            except OSError:
                pass
    _fsync_directory(os.path.dirname(destination))


@contextmanager
def atomic_file(path: PathLike) -> Iterator[BinaryIO]:
    """Yields a binary file object; on success its content replaces ``path``
    atomically, on failure (any exception) ``path`` is untouched and nothing
    is left behind."""
    destination = resolve_destination(path)
    directory = os.path.dirname(destination)
    remove_stale_temporaries(destination)
    fd = _open_anonymous(directory)
    named = None
    if fd is None:
        named = _temporary_name(destination)
        fd = os.open(named, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    f = os.fdopen(fd, "w+b")
    try:
        yield f
        f.flush()
        _publish(f.fileno(), named, destination)
        named = None
    finally:
        f.close()
        if named is not None:
            try:
                os.unlink(named)
            except OSError:
                pass


@contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """Yields a temporary path (``.NAME.<pid>.<n>.tmp``) beside ``path`` for
    writers that need a name (e.g. h5py); on success it is flushed and
    renamed over ``path``, on failure removed."""
    destination = resolve_destination(path)
    remove_stale_temporaries(destination)
    temporary = _temporary_name(destination)
    os.close(os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666))
    try:
        yield temporary
        fd = os.open(temporary, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        try:
            _publish(fd, temporary, destination)
            temporary = ""
        finally:
            os.close(fd)
    finally:
        if temporary:
            try:
                os.unlink(temporary)
            except OSError:
                pass
