"""Read a trained checkpoint into a model, with one clear sentence for every way it can fail."""
import glob
import os.path as osp
import pickle
import re
import zipfile
from typing import Optional, Sequence

import torch
from mmengine.runner.checkpoint import CheckpointLoader
from torch import nn

from ..errors import CheckpointError
from .work_dir import read_pointer


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or for a work dir its best checkpoint (else the one its
    ``last_checkpoint`` names)."""
    if not osp.isdir(path):
        return path
    best = sorted(glob.glob(osp.join(path, 'best_*.pth')), key=osp.getmtime)
    if best:
        return best[-1]
    latest = read_pointer(path)
    if latest:
        return latest
    raise CheckpointError(f'Work dir {path!r} holds no checkpoint (no best_*.pth and no '
                          'last_checkpoint); pass a .pth file.')


_TRUSTED_CHECKPOINTS = set()


def trust_checkpoint(path: str) -> None:
    """Allow ``path`` to be unpickled in full (``weights_only=False``), also when MMEngine
    loads it (resume, ``load_from``). Only for files from a source you trust: a pickle can
    run any code. ``--trust-checkpoint`` on the tools calls this."""
    _TRUSTED_CHECKPOINTS.add(osp.realpath(path))


def is_trusted(path: str) -> bool:
    return osp.realpath(path) in _TRUSTED_CHECKPOINTS


def load_checkpoint_file(path: str, map_location='cpu', mmap: bool = False):
    """``torch.load`` with ``weights_only=True`` and the checkpoint allow-list (unless the file
    is trusted), or a ``.safetensors`` file (timm's and the Hugging Face hub's weights, mapped);
    every failure becomes one :class:`CheckpointError` sentence."""
    if not osp.isfile(path):
        raise CheckpointError(f'Checkpoint {path!r} does not exist.')
    if path.endswith('.safetensors'):
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(path, device=str(map_location or 'cpu'))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f'{path!r} is not a readable safetensors file '
                                  f'({str(error)[:80]}); it may be truncated.') from None
    mmap = mmap and zipfile.is_zipfile(path)  # the legacy (pre-1.6) format cannot be mapped
    try:
        return torch.load(path, map_location=map_location, weights_only=not is_trusted(path),
                          mmap=mmap)
    except pickle.UnpicklingError as error:
        found = re.search(r'GLOBAL (\S+)', str(error))
        detail = found.group(1) if found else str(error).strip().splitlines()[-1][:120]
        raise CheckpointError(
            f'Refused to load {path!r}: it contains pickled Python objects that are not weights '
            f'({detail}), and unpickling them could run arbitrary code. If you trust the file '
            '(e.g. you wrote it with another tool), pass --trust-checkpoint.') from None
    except Exception as error:  # torch raises KeyError, EOFError, OSError, RuntimeError, ...
        raise CheckpointError(
            f'{path!r} is not a readable PyTorch checkpoint ({type(error).__name__}: '
            f'{str(error)[:80]}); it may be truncated or not a checkpoint.') from None


def read_checkpoint(path: str, mmap: bool = False) -> dict:
    """A checkpoint dict, loaded safely (see :func:`load_checkpoint_file`). ``mmap=True``
    maps the file instead of reading it: a tensor is read when it is used, and the rest (e.g.
    a training checkpoint's optimizer state) never."""
    checkpoint = load_checkpoint_file(path, mmap=mmap)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path!r} holds a {type(checkpoint).__name__}, not a checkpoint.')
    return checkpoint


@CheckpointLoader.register_scheme(prefixes='', force=True)
def _load_local_checkpoint(filename: str, map_location=None):
    """MMEngine's loader for local files (resume, ``load_from``, ``Pretrained``), with the
    same checks and messages as :func:`read_checkpoint`."""
    return load_checkpoint_file(osp.expanduser(filename), map_location)


def is_complete_checkpoint(path: str) -> bool:
    """True when ``path`` is a whole zip-format checkpoint (its central directory, written
    last, is readable): a file cut short by a crash fails."""
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def checkpoint_iteration(path: str) -> int:
    """The training iterations a complete checkpoint holds (-1 when it cannot be read)."""
    try:
        return int(read_checkpoint(path, mmap=True).get('meta', {}).get('iter', -1))
    except CheckpointError:
        return -1


def latest_complete_checkpoint(work_dir: str) -> Optional[str]:
    """Of the checkpoint ``last_checkpoint`` names and the epoch, iteration and recovery
    checkpoints of ``work_dir``, the complete one that holds the most training iterations (a
    crash may have cut the newest file short, or come before the pointer was updated)."""
    # not best_*.pth: it is written before the epoch's scheduler and early-stopping steps
    candidates = sorted(path for path in glob.glob(osp.join(work_dir, '*.pth'))
                        if re.fullmatch(r'(epoch_\d+|iter_\d+|recovery)\.pth',
                                        osp.basename(path)))
    pointed = read_pointer(work_dir)  # a file of this work dir, never another run's
    if pointed:
        candidates.insert(0, pointed)  # first among equals
    complete = [path for path in candidates if path and is_complete_checkpoint(path)]
    return max(complete, key=checkpoint_iteration, default=None)


def checkpoint_classes(checkpoint: dict) -> Optional[tuple]:
    """The class names a checkpoint was trained on, if it records them."""
    classes = checkpoint.get('meta', {}).get('dataset_meta', {}).get('classes')
    return tuple(classes) if classes else None


def check_weights_fit(model: nn.Module, checkpoint: dict, path: str) -> dict:
    """The checkpoint's ``state_dict``, after checking that it holds every tensor of ``model``
    in its shape (one :class:`CheckpointError` sentence otherwise)."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f'{path!r} has no state_dict of tensors; is it a checkpoint?')
    state_dict = {re.sub(r'^module\.', '', key): value for key, value in state_dict.items()}
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    mismatched = [key for key in expected
                  if key in state_dict and state_dict[key].shape != expected[key].shape]
    if mismatched:
        key = mismatched[0]
        hint = _fix_hint(checkpoint, mismatched)
        raise CheckpointError(
            f'Checkpoint {path!r} does not fit the model of this config: {key} is '
            f'{list(state_dict[key].shape)} in the checkpoint but {list(expected[key].shape)} '
            f'in the model ({len(mismatched)} mismatched tensors).{hint}')
    if missing:
        raise CheckpointError(
            f'Checkpoint {path!r} lacks {len(missing)} tensors of this model (e.g. '
            f'{", ".join(missing[:3])}); was it trained with a different config?')
    return state_dict


def load_weights(model: nn.Module, checkpoint: dict, path: str, assign: bool = False) -> None:
    """Copy the checkpoint's ``state_dict`` into ``model`` (checked by
    :func:`check_weights_fit`). ``assign=True`` makes the checkpoint's tensors the model's (no
    copy: with a mapped checkpoint the weights are never in memory twice)."""
    model.load_state_dict(check_weights_fit(model, checkpoint, path), strict=False,
                          assign=assign)


def _fix_hint(checkpoint: dict, mismatched: Sequence[str]) -> str:
    """What to do: fix the class count when only the classifier differs, else the config."""
    classes = checkpoint_classes(checkpoint)
    if classes and all(key.startswith('head.') for key in mismatched):
        return (f' The checkpoint was trained on {len(classes)} classes: pass '
                f'`--cfg-options model.head.num_classes={len(classes)}`.')
    return ' Pass the config the checkpoint was trained with.'
