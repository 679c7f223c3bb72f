"""What a work dir records about itself, kept relative to it, and who may write into it.

A work dir must never lose or mix a run: a copied or moved work dir resumes, tests and reports
on its own files and never touches another directory's; one training run writes into it at a
time; a fresh start never overwrites an earlier run's checkpoints. This module holds those
rules; ``BioRunner``, the checkpoint hooks and the tools apply them:

- ``last_checkpoint`` names a file of the work dir by its name alone (MMEngine writes an
  absolute path); a path outside the work dir is followed only where the work dir holds a file
  of that name (a copied or moved run), else refused in one sentence;
- ``training.lock``: an OS lock held by the training run (the kernel releases it when the
  process dies), with the holder's process id, host and start time inside;
- ``run.json``: the folder the run was started from, against which the relative paths of the
  saved config (``data_root``) resolve when a tool reads the work dir from elsewhere;
- :func:`archive_previous_run` (``tools/train.py --restart``) moves an earlier run's files
  into ``previous_<time>/`` instead of overwriting them.
"""
import fcntl
import glob
import json
import os
import os.path as osp
import re
import socket
import time
from typing import List, Optional, Sequence

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write, output_errors

POINTER = 'last_checkpoint'
LOCK = 'training.lock'
RUN_RECORD = 'run.json'
# what a training run writes into its work dir (and a fresh start would overwrite)
RUN_FILES = re.compile(r'(epoch_\d+|iter_\d+|recovery|best_.+)\.pth'
                       r'|.+\.(calibration\.json|features\.npz|val_posteriors\.npz)'
                       r'|last_checkpoint|bad_images\.txt')


def inside(path: str, work_dir: str) -> bool:
    """Whether ``path`` lies in ``work_dir`` (after resolving links)."""
    return osp.dirname(osp.realpath(path)) == osp.realpath(work_dir)


def local_path(path: Optional[str], work_dir: str) -> Optional[str]:
    """``path`` as a file of ``work_dir``: relative paths are joined to it, a path into it is
    kept, a path elsewhere becomes the work dir's file of the same name when there is one (a
    copied or moved run) and None otherwise."""
    if not path:
        return None
    if not osp.isabs(path):
        return osp.join(work_dir, path)
    if inside(path, work_dir):
        return path
    same_name = osp.join(work_dir, osp.basename(path))
    return same_name if osp.exists(same_name) else None


def write_pointer(work_dir: str, checkpoint: str) -> None:
    """Point ``last_checkpoint`` at ``checkpoint`` (a file of the work dir) by its name."""
    atomic_write(osp.join(work_dir, POINTER), osp.basename(checkpoint))


def read_pointer(work_dir: str) -> Optional[str]:
    """The checkpoint ``last_checkpoint`` names, as a path in ``work_dir``; None without a
    pointer. One sentence for a damaged pointer or one naming another run's file."""
    pointer = osp.join(work_dir, POINTER)
    if not osp.isfile(pointer):
        return None
    try:
        with open(pointer, encoding='utf-8') as file:
            named = file.read().strip()
    except (OSError, UnicodeDecodeError):
        raise CheckpointError(f'{pointer!r} is damaged (not a file name); delete it, and '
                              '--resume picks the newest complete checkpoint of the work '
                              'dir.') from None
    if not named or '\n' in named:
        raise CheckpointError(f'{pointer!r} is damaged (it names no single file); delete it, '
                              'and --resume picks the newest complete checkpoint of the work '
                              'dir.')
    path = local_path(named, work_dir)
    if path is None:
        raise CheckpointError(
            f'{pointer!r} names {named!r}, a file of another work dir; this work dir resumes '
            'only from its own files: delete the pointer, or pass --resume with a checkpoint '
            'of this work dir.')
    return path


def run_files(work_dir: str) -> List[str]:
    """The files of an earlier training run in ``work_dir`` (checkpoints, their calibration,
    the pointer), sorted."""
    if not osp.isdir(work_dir):
        return []
    return sorted(name for name in os.listdir(work_dir) if RUN_FILES.fullmatch(name))


def archive_previous_run(work_dir: str, keep: Sequence[str] = ()) -> Optional[str]:
    """Move an earlier run's files (:func:`run_files`, its saved config and log folders) into
    ``<work_dir>/previous_<time>/``, so that a fresh start loses nothing; returns that folder
    (None when there was nothing to move). Files named in ``keep`` (the config about to be
    trained, if it lives there) stay."""
    names = run_files(work_dir)
    if not names:
        return None
    kept = {osp.realpath(path) for path in keep}
    names += [name for name in os.listdir(work_dir)
              if (name.endswith('.py') and osp.realpath(osp.join(work_dir, name)) not in kept)
              or (re.fullmatch(r'\d{8}_\d{6}(_\d+)?', name)
                  and osp.isdir(osp.join(work_dir, name)))]
    names += [name for name in ('calibration', RUN_RECORD)
              if osp.exists(osp.join(work_dir, name))]
    archive = osp.join(work_dir, time.strftime('previous_%Y%m%d_%H%M%S'))
    with output_errors(archive):
        os.makedirs(archive)
        for name in sorted(set(names)):
            os.replace(osp.join(work_dir, name), osp.join(archive, name))
    return archive


def check_fresh_start(work_dir: str) -> None:
    """Refuse to train afresh over an earlier run's checkpoints (one sentence with the
    choices)."""
    earlier = [name for name in run_files(work_dir) if name.endswith('.pth')]
    if earlier:
        shown = ', '.join(earlier[:3]) + (', …' if len(earlier) > 3 else '')
        raise ConfigError(
            f'Work dir {work_dir!r} holds checkpoints of an earlier run ({shown}): continue it '
            'with --resume, start over with --restart (its files are moved to a previous_<time> '
            'folder inside it), or train into another --work-dir.')


def check_nothing_damaged(work_dir: str) -> None:
    """For ``--auto-resume`` with no complete checkpoint: refuse when checkpoints are there
    but damaged, instead of silently starting over them."""
    earlier = [name for name in run_files(work_dir) if name.endswith('.pth')]
    if earlier:
        raise CheckpointError(
            f'--auto-resume found no complete checkpoint in {work_dir!r}, but '
            f'{", ".join(earlier[:3])} {"is" if len(earlier) == 1 else "are"} there, damaged '
            '(cut short by a crash?); nothing was changed. Start over on purpose with '
            '--restart (the files are moved to a previous_<time> folder) or another '
            '--work-dir.')


class WorkDirLock:
    """An exclusive OS lock on ``<work_dir>/training.lock`` for as long as a training run
    writes into the work dir; the kernel releases it when the process ends, even by
    ``kill -9``. A second run fails at once with one sentence naming the holder."""

    def __init__(self, work_dir: str):
        self.path = osp.join(work_dir, LOCK)
        self.file = None

    def acquire(self) -> 'WorkDirLock':
        with output_errors(self.path):
            self.file = open(self.path, 'a+', encoding='utf-8')
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or 'another process'
            self.file.close()
            self.file = None
            raise ConfigError(
                f'Work dir {osp.dirname(self.path)!r} is in use by another training run '
                f'({holder}); wait for it to end, or train into another --work-dir.') from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f'process {os.getpid()} on {socket.gethostname()}, started '
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self.file.flush()
        return self

    def release(self) -> None:
        if self.file is not None:
            self.file.truncate(0)
            fcntl.flock(self.file, fcntl.LOCK_UN)
            self.file.close()
            self.file = None


def check_not_in_use(work_dir: str) -> None:
    """One sentence naming the holder when a training run holds ``work_dir`` (a probe of the
    lock: taken and given back at once)."""
    if osp.isfile(osp.join(work_dir, LOCK)):
        WorkDirLock(work_dir).acquire().release()


def write_run_record(work_dir: str, config_name: str) -> None:
    """Record where the run was started (relative paths of its config resolve there)."""
    atomic_write(osp.join(work_dir, RUN_RECORD), json.dumps(dict(
        config=config_name, started_in=os.getcwd(),
        started=time.strftime('%Y-%m-%d %H:%M:%S')), indent=2))


def read_run_record(work_dir: str) -> Optional[dict]:
    """The record of :func:`write_run_record`, or None (an older work dir, or none)."""
    path = osp.join(work_dir, RUN_RECORD)
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as file:
            record = json.load(file)
    except (OSError, ValueError):
        raise ConfigError(f'{path!r} is damaged; delete it (tools then resolve the saved '
                          "config's relative paths against the current folder).") from None
    return record if isinstance(record, dict) else None


def holds_a_run(folder: str) -> bool:
    """Whether ``folder`` is a work dir (a config saved there belongs to a run)."""
    return (osp.isfile(osp.join(folder, RUN_RECORD)) or osp.isfile(osp.join(folder, POINTER))
            or bool(glob.glob(osp.join(folder, '*.pth'))))
