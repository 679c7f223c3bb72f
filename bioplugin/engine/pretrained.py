"""Resolve the ``Pretrained`` checkpoints a config names to local files before training.

A URL is downloaded once into the torch hub cache (``$TORCH_HOME/hub/checkpoints``, where
``torch.hub`` and MMEngine cache them too) and the config is pointed at the cached file, so the
weights load through the same local, allow-listed path as every other checkpoint.
"""
import os
import os.path as osp
from typing import Iterator, Tuple
from urllib.parse import urlparse

import torch

from ..errors import CheckpointError


def iter_pretrained_init_cfgs(node, path: str = '') -> Iterator[Tuple[str, dict]]:
    """Yield ``(dotted key, init_cfg)`` for every ``type='Pretrained'`` init_cfg in a config."""
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and 'checkpoint' in node:
            yield path, node
        for key, value in node.items():
            yield from iter_pretrained_init_cfgs(value, f'{path}.{key}' if path else key)
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
    try:
        # writes to a temporary file and renames it: no half-written cache entry
        torch.hub.download_url_to_file(url, destination, progress=True)
    except (OSError, ValueError) as error:  # URLError and HTTPError are OSErrors
        raise CheckpointError(
            f'Cannot download the pretrained weights {url} ({error}). On a machine without '
            f'internet, copy that file to {destination}, or pass a local file with '
            f'`--cfg-options {key}.checkpoint=/path/to/weights.pth`, or train from scratch '
            f'with `--cfg-options {key}=None`.') from None
    return destination


def resolve_pretrained_checkpoints(model_cfg: dict, prefix: str = 'model') -> None:
    """Point every ``Pretrained`` init_cfg of ``model_cfg`` at an existing local file."""
    for key, init_cfg in iter_pretrained_init_cfgs(model_cfg, prefix):
        checkpoint = str(init_cfg['checkpoint'])
        scheme = urlparse(checkpoint).scheme
        if scheme in ('http', 'https'):
            init_cfg['checkpoint'] = fetch_checkpoint(checkpoint, key)
        elif not scheme and not osp.isfile(osp.expanduser(checkpoint)):
            raise CheckpointError(
                f'Pretrained weights {checkpoint!r} ({key}.checkpoint) do not exist; pass an '
                f'existing file or train from scratch with `--cfg-options {key}=None`.')
