"""Pretrained weights matched to the module they initialise, key by key, whatever their layout.

A checkpoint's tensors (a bare ``state_dict``, or one under ``state_dict`` / ``model``) are
matched to the module's own keys by the one key mapping that fits most of them: the keys as
they are (torchvision, timm and bare backbone files), without a leading ``backbone.`` /
``module.`` / ``model.`` (MMPretrain and MMEngine checkpoints, DDP-saved files), and/or under
the module's single wrapper (MMPretrain's ``TIMMBackbone`` keeps the timm model as
``timm_model``). The checkpoint's classifier (``fc``, ``classifier``, ``head``, ``heads``,
``last_linear``) and anything outside a stripped prefix are dropped and reported. Then every
tensor of the module must be there with its shape and nothing else may be left over: a missing,
unknown or reshaped tensor is an error naming it, never a warning, so a run never starts from
random weights it did not ask for.
"""
import os.path as osp
from collections import namedtuple
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from mmpretrain.registry import MODELS

from ..errors import CheckpointError
from ..fileio import atomic_open
from .checkpoint_io import read_checkpoint

ConversionReport = namedtuple('ConversionReport', 'layout taken dropped')
# top-level names under which classification models keep their ImageNet classifier
CLASSIFIER_MODULES = ('fc', 'classifier', 'head', 'heads', 'last_linear')
CONTAINER_PREFIXES = ('backbone', 'module', 'model')


def checkpoint_tensors(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The tensors of a checkpoint: a bare state_dict or one under ``state_dict`` / ``model``."""
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    return {key: value for key, value in checkpoint.items() if isinstance(value, torch.Tensor)}


def _first_component(key: str) -> str:
    return key.split('.', 1)[0]


def _wrapper(keys: Iterable[str]) -> str:
    """The one child every key of a module lives under (``timm_model``), else ''."""
    firsts = {_first_component(key) for key in keys}
    return firsts.pop() if len(firsts) == 1 else ''


def _mappings(state: Dict[str, torch.Tensor], expected: Iterable[str],
              prefix: Optional[str]) -> List[Tuple[str, str]]:
    """Candidate ``(strip, add)`` prefix pairs, the preferred first."""
    strips = ['']
    for candidate in ([prefix] if prefix else []) + list(CONTAINER_PREFIXES):
        if candidate not in strips and any(key.startswith(candidate + '.') for key in state):
            strips.append(candidate)
    wrapper = _wrapper(expected)
    adds = [''] + ([wrapper] if wrapper else [])
    return [(strip, add) for strip in strips for add in adds]


def _mapped(state: Dict[str, torch.Tensor], strip: str, add: str) -> Dict[str, torch.Tensor]:
    head = strip + '.' if strip else ''
    return {(add + '.' if add else '') + key[len(head):]: value
            for key, value in state.items() if key.startswith(head)}


def _describe_mapping(strip: str, add: str) -> str:
    if not strip and not add:
        return 'keys as they are'
    return ' and '.join(part for part in (
        f"keys without '{strip}.'" if strip else '', f"keys under '{add}.'" if add else '')
        if part)


def aligned_state_dict(checkpoint: dict, module: nn.Module, prefix: Optional[str] = None
                       ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """The checkpoint's tensors keyed as ``module``'s own, its classifier dropped.

    ``prefix`` (``init_cfg.prefix``, e.g. ``'backbone'``) is tried first; the mapping that
    matches most of the module's keys wins. Nothing is checked here: see
    :func:`check_module_weights`.
    """
    state = checkpoint_tensors(checkpoint)
    expected = module.state_dict()
    best = max(_mappings(state, expected, prefix),
               key=lambda mapping: sum(key in expected for key in _mapped(state, *mapping)))
    mapped = _mapped(state, *best)
    wrapper = best[1] + '.' if best[1] else ''

    def is_classifier(key: str) -> bool:
        return key not in expected and _first_component(key[len(wrapper):]) in CLASSIFIER_MODULES

    kept = {key: value for key, value in mapped.items() if not is_classifier(key)}
    head = best[0] + '.' if best[0] else ''
    dropped = sorted(key for key in state if not key.startswith(head)) + sorted(
        key[len(wrapper):] for key in mapped if is_classifier(key))
    return kept, ConversionReport(_describe_mapping(*best), len(kept), dropped)


def check_module_weights(module: nn.Module, weights: Dict[str, torch.Tensor],
                         source: str) -> None:
    """Every tensor of ``module`` must be in ``weights`` with its shape, and nothing else."""
    expected = module.state_dict()
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
            f'{source!r} does not fit the {type(module).__name__} of this config: '
            + '; '.join(f'{len(keys)} tensors {kind}: {", ".join(keys[:4])}'
                        + (', ...' if len(keys) > 4 else '')
                        for kind, keys in problems.items() if keys)
            + '. Is it a checkpoint of the same architecture?')


def checked_weights(source: str, module: nn.Module, prefix: Optional[str] = None
                    ) -> Tuple[Dict[str, torch.Tensor], ConversionReport]:
    """``(weights, report)`` of checkpoint file ``source`` for ``module``, checked key by key
    (:func:`aligned_state_dict`, :func:`check_module_weights`); the file is memory-mapped."""
    weights, report = aligned_state_dict(read_checkpoint(source, mmap=True), module, prefix)
    check_module_weights(module, weights, source)
    return weights, report


def checked_backbone_weights(source: str, backbone_cfg: dict):
    """:func:`checked_weights` for the backbone ``backbone_cfg`` builds."""
    return checked_weights(source, MODELS.build(dict(backbone_cfg, init_cfg=None)))


def describe(report: ConversionReport) -> str:
    return (f'{report.layout}: {report.taken} tensors taken, dropped '
            f'{", ".join(report.dropped) or "none"}, missing none')


def save_backbone_checkpoint(weights: Dict[str, torch.Tensor], report: ConversionReport,
                             source: str, destination: str) -> str:
    """Write backbone ``weights`` as an MMPretrain checkpoint (``backbone.*`` keys),
    atomically (see :func:`~bioplugin.fileio.atomic_open`)."""
    with atomic_open(destination, 'wb') as file:
        torch.save({'state_dict': {f'backbone.{key}': value for key, value in weights.items()},
                    'meta': {'converted_from': osp.basename(source),
                             'layout': report.layout}}, file)
    return destination
