"""Crash-safe file writes: a temporary file in the same folder, fsync, then one rename.

A reader (or a run resumed after ``kill -9``) sees either the old file or the complete new
one, never a truncated file. A full disk or an unwritable folder becomes one
:class:`~bioplugin.errors.OutputError` sentence naming the file.
"""
import errno
import fcntl
import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from typing import Iterator, IO, Union

from .errors import OutputError

# Write failures a user can fix, and how to say them.
OUTPUT_ERROR_REASONS = {
    errno.ENOSPC: 'the disk is full',
    errno.EDQUOT: 'the disk quota is exceeded',
    errno.EACCES: 'permission denied',
    errno.EPERM: 'permission denied',
    errno.EROFS: 'the file system is read-only',
    errno.ENOTDIR: 'a folder on its path is a file',
    errno.ENOENT: 'its folder cannot be created',
}
# Errors that can only come from writing, wherever they are raised.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def user_cache_dir(*parts: str) -> str:
    """bioplugin's folder in the user's cache: ``$XDG_CACHE_HOME/bioplugin`` (``~/.cache``
    without it), joined with ``parts``."""
    root = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return osp.join(root, 'bioplugin', *parts)


@contextmanager
def atomic_open(path: str, mode: str = 'wb', encoding: str = None) -> Iterator[IO]:
    """``with atomic_open(path, 'w') as file: ...`` replaces ``path`` only when the block
    finishes without an exception."""
    directory = osp.dirname(osp.abspath(path))
    with output_errors(path):
        os.makedirs(directory, exist_ok=True)
        # a short name: the target's may be near the file-name limit already
        handle, temporary = tempfile.mkstemp(prefix=f'.{osp.basename(path)[:32]}.',
                                             suffix='.tmp', dir=directory)
    try:
        with output_errors(path):
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)  # what a plain open() would give
            with os.fdopen(handle, mode, encoding=encoding,
                           **({} if 'b' in mode else dict(newline=''))) as file:
                yield file
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
            _fsync_directory(directory)
    finally:
        if osp.exists(temporary):
            os.remove(temporary)


def atomic_write(path: str, data: Union[bytes, str], encoding: str = 'utf-8') -> str:
    """Write ``data`` (bytes or text) to ``path`` atomically; returns ``path``."""
    text = isinstance(data, str)
    with atomic_open(path, 'w' if text else 'wb', encoding if text else None) as file:
        file.write(data)
    return path


def append_unique_line(path: str, line: str) -> bool:
    """Append ``line`` to the text file ``path`` unless it is there already; safe between
    processes (an exclusive lock). Returns whether it was added."""
    with output_errors(path):
        with open(path, 'a+', encoding='utf-8') as file:
            fcntl.flock(file, fcntl.LOCK_EX)
            file.seek(0)
            if line in file.read().splitlines():
                return False
            file.write(line + '\n')
            return True


def check_work_dir(work_dir: str) -> None:
    """Create ``work_dir`` and make sure files can be written there, before a long run."""
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise OutputError(f'--work-dir {work_dir!r} is a file, not a folder; choose a folder '
                          '(it is created if missing).')
    with output_errors(work_dir):
        os.makedirs(work_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=work_dir):
            pass


@contextmanager
def output_errors(path: str) -> Iterator[None]:
    """Turn "disk full", "permission denied", "read-only file system" and the like, raised
    while writing ``path``, into one :class:`OutputError` sentence."""
    try:
        yield
    except OSError as error:
        raise as_output_error(error, path) from None


def as_output_error(error: OSError, path: str = None) -> OSError:
    """The :class:`OutputError` for a write failure users can fix, else ``error`` itself."""
    reason = OUTPUT_ERROR_REASONS.get(error.errno)
    if reason is None or isinstance(error, OutputError):
        return error
    path = path or error.filename
    target = f'{path!r}' if path else 'the output'
    fix = 'free some space or choose' if error.errno in DISK_FULL_ERRNOS else 'choose'
    return OutputError(f'Cannot write {target}: {reason}; {fix} another --work-dir / output '
                       'path.')


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    try:
        handle = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
