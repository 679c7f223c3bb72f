"""Resolve the pretrained checkpoints a config names to checked local files before training.

An ``init_cfg`` of type ``Pretrained`` names its checkpoint by a known name
(``KNOWN_CHECKPOINTS``), a URL or a local path. A URL is downloaded once into the torch hub
cache (``$TORCH_HOME/hub/checkpoints``, where ``torch.hub`` and MMEngine cache them too). For a
backbone initialised with ``prefix='backbone'`` the weights are checked key by key against the
backbone the config builds, and a torchvision checkpoint is converted (once, cached) to the
MMPretrain layout. The config is then pointed at the local file, so MMEngine's stock
``Pretrained`` initialiser loads it through the same allow-listed path as every checkpoint::

    model = dict(backbone=dict(init_cfg=dict(
        type='Pretrained', checkpoint='torchvision_v2', prefix='backbone')))
"""
import hashlib
import os
import os.path as osp
from typing import Iterator, Tuple
from urllib.parse import urlparse

import torch
from mmengine.logging import print_log

from ..errors import CheckpointError
from .weight_conversion import checked_backbone_weights, describe, save_backbone_checkpoint

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


def iter_pretrained_init_cfgs(node, path: str = 'model') -> Iterator[Tuple[str, dict, dict]]:
    """Yield ``(dotted key, module config, init_cfg)`` for every ``Pretrained`` init_cfg."""
    if isinstance(node, dict):
        init_cfg = node.get('init_cfg')
        if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained' \
                and 'checkpoint' in init_cfg:
            yield f'{path}.init_cfg', node, init_cfg
        for key, value in node.items():
            if key != 'init_cfg':
                yield from iter_pretrained_init_cfgs(value, f'{path}.{key}')
    elif isinstance(node, (list, tuple)):
        for index, value in enumerate(node):
            yield from iter_pretrained_init_cfgs(value, f'{path}.{index}')


def cached_checkpoint_path(url: str) -> str:
    """Where a downloaded checkpoint is kept: the torch hub cache."""
    return osp.join(torch.hub.get_dir(), 'checkpoints', osp.basename(urlparse(url).path))


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
    """The local file for a known checkpoint name, a URL or a path (checked to exist)."""
    checkpoint = KNOWN_CHECKPOINTS.get(str(checkpoint), str(checkpoint))
    scheme = urlparse(checkpoint).scheme
    if scheme in ('http', 'https'):
        return fetch_checkpoint(checkpoint, key)
    if not scheme and not osp.isfile(osp.expanduser(checkpoint)):
        raise CheckpointError(
            f'Pretrained weights {checkpoint!r} ({key}.checkpoint) do not exist; pass an '
            f'existing file, one of {", ".join(KNOWN_CHECKPOINTS)}, or train from scratch with '
            f'`--cfg-options {key}=None`.')
    return osp.expanduser(checkpoint) if not scheme else checkpoint


def prepare_backbone_checkpoint(path: str, backbone_cfg: dict) -> str:
    """A file MMEngine's ``Pretrained(prefix='backbone')`` loads into this backbone exactly.

    The weights are checked against the backbone ``backbone_cfg`` builds; torchvision and bare
    layouts are converted once into the cache.
    """
    weights, report = checked_backbone_weights(path, backbone_cfg)
    print_log(f'Pretrained backbone weights {path} ({describe(report)})', logger='current')
    if report.source_format == 'mmpretrain':
        return path
    stat = os.stat(path)
    tag = hashlib.sha256(f'{osp.abspath(path)}:{stat.st_size}:{stat.st_mtime_ns}'.encode())
    destination = osp.join(torch.hub.get_dir(), 'checkpoints', 'bioplugin',
                           f'{osp.splitext(osp.basename(path))[0]}-{tag.hexdigest()[:8]}'
                           '.backbone.pth')
    if not osp.isfile(destination):
        save_backbone_checkpoint(weights, report, path, destination)
    return destination


def resolve_pretrained_checkpoints(model_cfg: dict, prefix: str = 'model') -> None:
    """Point every ``Pretrained`` init_cfg of ``model_cfg`` at an existing, checked file."""
    for key, module_cfg, init_cfg in list(iter_pretrained_init_cfgs(model_cfg, prefix)):
        path = local_checkpoint(init_cfg['checkpoint'], key)
        if init_cfg.get('prefix') == 'backbone' and key.endswith('.backbone.init_cfg'):
            path = prepare_backbone_checkpoint(path, module_cfg)
        init_cfg['checkpoint'] = path
