"""Backbone weights from torchvision or MMPretrain ImageNet checkpoints, checked key by key.

torchvision's classification state_dict keys without ``fc.*`` are exactly the keys of
MMPretrain's ``ResNet`` / ``ResNeXt`` (same stride convention, ``style='pytorch'``); MMPretrain
checkpoints hold the same keys under ``backbone.``. Either is reduced to the backbone's keys and
compared with the backbone the config builds: a missing key or a key of another shape is an
error, not a warning. The result is written as an MMPretrain-style checkpoint, which MMEngine's
``Pretrained`` initialiser loads with ``prefix='backbone'``.
"""
import os.path as osp
from collections import namedtuple
from typing import Dict, Tuple

import torch
from torch import nn

from mmpretrain.registry import MODELS

from ..errors import CheckpointError
from ..fileio import atomic_open
from .checkpoint_io import read_checkpoint

ConversionReport = namedtuple('ConversionReport', 'source_format taken dropped')


def backbone_state_dict(checkpoint: dict) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """The backbone tensors of a checkpoint, keyed as in MMPretrain's backbone.

    Recognised layouts: a torchvision state_dict (``conv1.weight`` … ``fc.bias``), an MMPretrain /
    MMEngine checkpoint (``state_dict`` with ``backbone.`` keys), or a bare backbone state_dict.
    Keys outside the backbone (``fc.*``, ``head.*``, ``neck.*``) are dropped and reported.
    """
    state = checkpoint.get('state_dict', checkpoint)
    state = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    prefix = 'backbone.'
    if any(key.startswith(prefix) for key in state):
        kept = {key[len(prefix):]: value for key, value in state.items()
                if key.startswith(prefix)}
        dropped = sorted(key for key in state if not key.startswith(prefix))
        return kept, ConversionReport('mmpretrain', len(kept), dropped)
    kept = {key: value for key, value in state.items() if not key.startswith('fc.')}
    dropped = sorted(key for key in state if key.startswith('fc.'))
    return kept, ConversionReport('torchvision' if dropped else 'backbone', len(kept), dropped)


def check_backbone_weights(backbone: nn.Module, weights: Dict[str, torch.Tensor],
                           source: str) -> None:
    """Every tensor of ``backbone`` must be in ``weights`` with its shape, and nothing else."""
    expected = backbone.state_dict()
    problems = {
        'of another shape': [f'{key} {list(weights[key].shape)} vs {list(value.shape)}'
                             for key, value in expected.items()
                             if key in weights and weights[key].shape != value.shape],
        # old checkpoints lack BatchNorm's step counter; loading fills it in
        'missing': sorted(key for key in set(expected) - set(weights)
                          if not key.endswith('num_batches_tracked')),
        'unknown to this backbone': sorted(set(weights) - set(expected)),
    }
    if any(problems.values()):
        raise CheckpointError(
            f'{source!r} does not fit the backbone {type(backbone).__name__} of this config: '
            + '; '.join(f'{len(keys)} tensors {kind}: {", ".join(keys[:4])}'
                        + (', ...' if len(keys) > 4 else '')
                        for kind, keys in problems.items() if keys)
            + '. Is it a checkpoint of the same architecture?')


def checked_backbone_weights(source: str, backbone_cfg: dict):
    """``(weights, report)`` of checkpoint ``source`` for the backbone ``backbone_cfg`` builds,
    checked key by key (see :func:`check_backbone_weights`)."""
    backbone = MODELS.build(dict(backbone_cfg, init_cfg=None))
    weights, report = backbone_state_dict(read_checkpoint(source))
    check_backbone_weights(backbone, weights, source)
    return weights, report


def describe(report: ConversionReport) -> str:
    return (f'{report.source_format} layout: {report.taken} tensors taken, dropped '
            f'{", ".join(report.dropped) or "none"}, missing none')


def save_backbone_checkpoint(weights: Dict[str, torch.Tensor], report: ConversionReport,
                             source: str, destination: str) -> str:
    """Write backbone ``weights`` as an MMPretrain checkpoint (``backbone.*`` keys),
    atomically (see :func:`~bioplugin.fileio.atomic_open`)."""
    with atomic_open(destination, 'wb') as file:
        torch.save({'state_dict': {f'backbone.{key}': value for key, value in weights.items()},
                    'meta': {'converted_from': osp.basename(source),
                             'source_format': report.source_format}}, file)
    return destination
