"""Read a trained checkpoint into a model, with one clear sentence for every way it can fail."""
import glob
import os.path as osp
import pickle
import re
from typing import Optional, Sequence

import torch
from mmengine.runner.checkpoint import find_latest_checkpoint
from torch import nn

from ..errors import CheckpointError


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or for a work dir its best checkpoint (else its latest one)."""
    if not osp.isdir(path):
        return path
    best = sorted(glob.glob(osp.join(path, 'best_*.pth')), key=osp.getmtime)
    if best:
        return best[-1]
    latest = find_latest_checkpoint(path)
    if latest:
        return latest
    raise CheckpointError(f'Work dir {path!r} holds no checkpoint (no best_*.pth and no '
                          'last_checkpoint); pass a .pth file.')


def read_checkpoint(path: str) -> dict:
    """Load ``path`` with ``torch.load(weights_only=True)`` and the checkpoint allow-list."""
    if not osp.isfile(path):
        raise CheckpointError(f'Checkpoint {path!r} does not exist.')
    try:
        checkpoint = torch.load(path, map_location='cpu')
    except pickle.UnpicklingError as error:
        found = re.search(r'GLOBAL (\S+)', str(error))
        detail = found.group(1) if found else str(error).strip().splitlines()[-1][:120]
        raise CheckpointError(
            f'Refused to load {path!r}: it contains pickled Python objects that are not weights '
            f'({detail}). Only load checkpoints from sources you trust.') from None
    except Exception as error:  # torch raises KeyError, EOFError, OSError, RuntimeError, ...
        raise CheckpointError(
            f'{path!r} is not a readable PyTorch checkpoint ({type(error).__name__}: '
            f'{str(error)[:80]}); pass a .pth file written by tools/train.py.') from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path!r} holds a {type(checkpoint).__name__}, not a checkpoint.')
    return checkpoint


def checkpoint_classes(checkpoint: dict) -> Optional[tuple]:
    """The class names a checkpoint was trained on, if it records them."""
    classes = checkpoint.get('meta', {}).get('dataset_meta', {}).get('classes')
    return tuple(classes) if classes else None


def load_weights(model: nn.Module, checkpoint: dict, path: str) -> None:
    """Copy the checkpoint's ``state_dict`` into ``model``; every key must match in shape."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise CheckpointError(f'{path!r} has no state_dict of tensors; is it a checkpoint?')
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
    model.load_state_dict(state_dict, strict=False)


def _fix_hint(checkpoint: dict, mismatched: Sequence[str]) -> str:
    """What to do: fix the class count when only the classifier differs, else the config."""
    classes = checkpoint_classes(checkpoint)
    if classes and all(key.startswith('head.') for key in mismatched):
        return (f' The checkpoint was trained on {len(classes)} classes: pass '
                f'`--cfg-options model.head.num_classes={len(classes)}`.')
    return ' Pass the config the checkpoint was trained with.'
