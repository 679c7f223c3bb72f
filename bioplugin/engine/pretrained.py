"""ImageNet weights for the backbone, named by alias, URL, ``torchvision://`` name or path.

A ``Pretrained`` ``init_cfg`` names its checkpoint by a known name (:data:`KNOWN_CHECKPOINTS`),
MMEngine's ``torchvision://<model>[.<weights>]`` (``torchvision://resnext50_32x4d.imagenet1k_v2``),
a URL or a local path, for any backbone (a registered one, ``TIMMBackbone``, ``TorchvisionBackbone``).
Before the weights are initialised, ``BioRunner`` turns each into a local file — a URL is
downloaded once into the torch hub cache (``$TORCH_HOME/hub/checkpoints``) with the sha256
prefix of its file name checked —, matches its keys to the module's whatever their layout
(:mod:`.weight_conversion`: MMPretrain's ``backbone.`` prefix, torchvision's and timm's bare
keys, ``TIMMBackbone``'s ``timm_model.`` wrapper; the ImageNet classifier dropped), stops with
one sentence naming any missing, unknown or reshaped tensor, and loads them. ``prefix`` is
optional: it is tried first.
``if_unavailable='scratch'`` trains from scratch, with one log line saying so, when the weights
can be neither found nor downloaded::

    model = dict(backbone=dict(init_cfg=dict(
        type='Pretrained', checkpoint='torchvision_v2', prefix='backbone')))
"""
import logging
import os
import os.path as osp
from typing import Iterator, Optional, Tuple
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import get_torchvision_models
from torch import nn

from ..errors import CheckpointError
from .weight_conversion import checked_weights, describe

# Published ImageNet-1k checkpoints of ResNeXt101_32x8d (top-1 as published).
KNOWN_CHECKPOINTS = {
    # torchvision ResNeXt101_32X8D_Weights.IMAGENET1K_V2, 82.83 %
    'torchvision_v2': 'https://download.pytorch.org/models/resnext101_32x8d-110c445d.pth',
    # torchvision ResNeXt101_32X8D_Weights.IMAGENET1K_V1, 79.31 %
    'torchvision_v1': 'https://download.pytorch.org/models/resnext101_32x8d-8ba56ff5.pth',
    # MMPretrain resnext101-32x8d_8xb32_in1k, 79.31 %
    'mmpretrain': ('https://download.openmmlab.com/mmclassification/v0/resnext/'
                   'resnext101_32x8d_b32x8_imagenet_20210506-23a247d5.pth'),
}
TORCHVISION_SCHEME = 'torchvision://'
FALLBACKS = ('error', 'scratch')


def pretrained_modules(model: nn.Module) -> Iterator[Tuple[str, BaseModule]]:
    """``(name, module)`` for every module whose ``init_cfg`` is a ``Pretrained`` checkpoint."""
    for name, module in model.named_modules():
        init_cfg = getattr(module, 'init_cfg', None)
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained' \
                and init_cfg.get('checkpoint'):
            yield name, module


def cached_checkpoint_path(url: str) -> str:
    """Where a downloaded checkpoint is kept: the torch hub cache."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


def checkpoint_url(checkpoint: str, key: str = 'model.backbone.init_cfg') -> str:
    """The URL or path behind a known name or a ``torchvision://`` name."""
    checkpoint = KNOWN_CHECKPOINTS.get(str(checkpoint), str(checkpoint))
    if checkpoint.startswith(TORCHVISION_SCHEME):
        name = checkpoint[len(TORCHVISION_SCHEME):]
        urls = get_torchvision_models()
        if name not in urls:
            raise CheckpointError(f'{key}.checkpoint={checkpoint!r}: torchvision has no weights '
                                  f'named {name!r} (e.g. resnext101_32x8d.imagenet1k_v2).')
        return urls[name]
    return checkpoint


def fetch_checkpoint(url: str, key: str = 'model.backbone.init_cfg') -> str:
    """Return the local path of ``url``, downloading it into the cache if needed."""
    destination = cached_checkpoint_path(url)
    if osp.isfile(destination):
        return destination
    os.makedirs(osp.dirname(destination), exist_ok=True)
    # published file names end in the first hex digits of their sha256 (…-110c445d.pth)
    found = torch.hub.HASH_REGEX.search(osp.basename(destination))
    try:
        # writes to a temporary file and renames it: no half-written cache entry
        torch.hub.download_url_to_file(url, destination, progress=True,
                                       hash_prefix=found.group(1) if found else None)
    except RuntimeError as error:  # raised for a hash mismatch
        raise CheckpointError(f'The download of {url} is corrupt ({error}); run again.') from None
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
        raise CheckpointError(
            f'Cannot download the pretrained weights {url} ({error}). On a machine without '
            f'internet, copy that file to {destination}, or pass a local file with '
            f'`--cfg-options {key}.checkpoint=/path/to/weights.pth`, or train from scratch '
            f'with `--cfg-options {key}=None`.') from None
    return destination


def local_checkpoint(checkpoint: str, key: str = 'model.backbone.init_cfg') -> str:
    """The local file for a known name, a ``torchvision://`` name, a URL or a path."""
    checkpoint = checkpoint_url(checkpoint, key)
    scheme = urlparse(checkpoint).scheme
    if scheme in ('http', 'https'):
        return fetch_checkpoint(checkpoint, key)
    path = osp.expanduser(checkpoint)
    if scheme or not osp.isfile(path):
        raise CheckpointError(
            f'Pretrained weights {checkpoint!r} ({key}.checkpoint) do not exist; pass an '
            f'existing file, one of {", ".join(KNOWN_CHECKPOINTS)}, a torchvision:// name, or '
            f'train from scratch with `--cfg-options {key}=None`.')
    return path


def prepare_pretrained(module: BaseModule, key: str) -> Optional[str]:
    """Load ``module``'s pretrained weights, checked key by key; returns the local file (None:
    from scratch). The model's ``init_weights`` then leaves ``module`` as it is.
    """
    init_cfg = dict(module.init_cfg)
    fallback = init_cfg.pop('if_unavailable', 'error')
    if fallback not in FALLBACKS:
        raise CheckpointError(f'{key}.if_unavailable={fallback!r}: use one of '
                              f'{", ".join(FALLBACKS)}.')
    try:
        path = local_checkpoint(init_cfg['checkpoint'], key)
    except CheckpointError as error:
        if fallback == 'error':
            raise
        reason = str(error).split('. ')[0]  # the first sentence; the rest is advice
        url = checkpoint_url(init_cfg['checkpoint'], key)
        hint = (f'; put the file at {cached_checkpoint_path(url)} to start from it'
                if urlparse(url).scheme in ('http', 'https') else '')
        print_log(f'{key}: training from scratch ({reason}){hint}.', logger='current',
                  level=logging.WARNING)
        module.init_cfg = None
        return None
    weights, report = checked_weights(path, module, init_cfg.get('prefix'))
    module.load_state_dict(weights, strict=False)  # checked: only BatchNorm step counters
    # the weights are in place: the model's init_weights leaves this module as it is
    module._is_init = True
    module.init_cfg = dict(init_cfg, checkpoint=path)
    print_log(f'{key}: pretrained weights {path} ({describe(report)})', logger='current')
    return path


def resolve_pretrained(model: nn.Module, prefix: str = 'model') -> dict:
    """:func:`prepare_pretrained` for every ``Pretrained`` module of ``model``; returns
    ``{config key: local file, or None for from scratch}``."""
    return {key: prepare_pretrained(module, key) for key, module in (
        (f'{prefix}.{name}.init_cfg' if name else f'{prefix}.init_cfg', module)
        for name, module in list(pretrained_modules(model)))}


def describe_initial_weights(loaded: dict, load_from: Optional[str] = None) -> str:
    """Where a run's weights start, in words: ``loaded`` is what :func:`resolve_pretrained`
    returned, ``load_from`` a checkpoint the whole model starts from."""
    if load_from:
        return f'weights from {load_from}'
    files = [osp.basename(path) for path in loaded.values() if path]
    if files:
        return f'pretrained weights {", ".join(files)}'
    if loaded:
        return 'from scratch (the pretrained weights are unavailable)'
    return 'from scratch'


def skip_pretrained(model: nn.Module) -> None:
    """Drop every ``Pretrained`` init (resuming: all weights come from the checkpoint)."""
    for _, module in list(pretrained_modules(model)):
        module.init_cfg = None
