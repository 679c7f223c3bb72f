"""Multi-process runs on MMEngine: torchrun / Slurm on GPUs, and torchrun with gloo on CPUs.

MMEngine's ``pytorch`` launcher calls ``torch.cuda.set_device`` and its default DDP wrapper
passes ``device_ids=[LOCAL_RANK]``: both fail without GPUs. On CPU the process group is therefore
initialised here with the gloo backend (MMEngine then skips its own initialisation) and DDP gets
``device_ids=None``. Everything else — sharded samplers, gathered metrics, rank-0-only
checkpoints and logs — is MMEngine's.
"""
import math
import os
from typing import Callable, List, Sequence

import numpy as np
import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import all_gather_object, barrier, get_dist_info, init_dist, is_main_process

from ..errors import ConfigError

LAUNCHERS = ('none', 'pytorch', 'slurm')


def setup_distributed(launcher: str = 'none') -> None:
    """Join the process group of this launcher (no-op for ``'none'`` or when already joined)."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f'Unknown launcher {launcher!r}; choose one of {", ".join(LAUNCHERS)}.')
    if launcher == 'none' or torch_dist.is_initialized():
        return
    if torch.cuda.is_available():
        init_dist(launcher, backend='nccl')
    elif launcher == 'pytorch':
        if 'RANK' not in os.environ:
            raise ConfigError('--launcher pytorch expects to be started by torchrun '
                              '(tools/dist_train.sh).')
        torch_dist.init_process_group(backend='gloo')
    else:
        raise ConfigError(f'--launcher {launcher} needs GPUs; on CPUs use torchrun '
                          '(tools/dist_train.sh) with --launcher pytorch.')


def configure_distributed_training(cfg: Config, launcher: str) -> None:
    """Set ``cfg.launcher`` and, on CPU, a DDP wrapper without device ids."""
    cfg.launcher = launcher
    if launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.get('sync_bn'):
        raise ConfigError('SyncBatchNorm runs on GPUs only; remove `sync_bn` for a CPU run.')
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper


def main_process_first(function: Callable[[], None]) -> None:
    """Run ``function`` on rank 0, then on the other ranks (e.g. download once, then read)."""
    if is_main_process():
        function()
    barrier()
    if not is_main_process():
        function()


def shard_indices(count: int) -> List[int]:
    """This rank's share of ``range(count)``: every ``world``-th index starting at ``rank``,
    padded by wrapping around so every rank has the same number (as MMEngine's sampler does)."""
    rank, world = get_dist_info()
    padded = np.resize(np.arange(count), math.ceil(count / world) * world) if count else []
    return [int(i) for i in padded[rank::world]]


def map_sharded(function: Callable[[Sequence[int]], np.ndarray], count: int) -> np.ndarray:
    """``function(indices)`` → one row per index, run on this rank's shard; the rows of all
    ranks are gathered in the original order and returned on every rank."""
    _, world = get_dist_info()
    if world == 1:
        return function(list(range(count)))
    parts = all_gather_object(np.asarray(function(shard_indices(count))))
    # shard r holds indices r, r + world, ...: interleave the parts back, drop the padding
    ordered = np.stack([part[k] for k in range(len(parts[0])) for part in parts])
    return ordered[:count]
