"""Multi-process runs on MMEngine: torchrun / Slurm on GPUs, and torchrun with gloo on CPUs.

MMEngine's ``pytorch`` launcher calls ``torch.cuda.set_device`` and its default DDP wrapper
passes ``device_ids=[LOCAL_RANK]``: both fail without GPUs. On CPU the process group is therefore
initialised here with the gloo backend (MMEngine then skips its own initialisation) and DDP gets
``device_ids=None``. Everything else — sharded samplers, gathered metrics, rank-0-only
checkpoints and logs — is MMEngine's. ``BioRunner`` calls :func:`configure_distributed` for
``launcher`` (set by ``--launcher`` of our tools and of MMPretrain's)::

    launcher = 'pytorch'   # tools/dist_train.sh, torchrun
"""
import atexit
import gc
import os
from typing import Callable, Optional, TypeVar

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.dist import barrier, init_dist, is_main_process

from ..errors import ConfigError

LAUNCHERS = ('none', 'pytorch', 'slurm', 'mpi')
T = TypeVar('T')


def setup_distributed(launcher: str = 'none', dist_cfg: Optional[dict] = None) -> None:
    """Join the process group of this launcher (no-op for ``'none'`` or when already joined).
    On GPUs MMEngine's ``init_dist`` joins it with ``dist_cfg`` (the config's
    ``env_cfg.dist_cfg``: ``backend``, default ``'nccl'``, ``timeout`` in seconds, …)."""
    if launcher not in LAUNCHERS:
        raise ConfigError(f'Unknown launcher {launcher!r}; choose one of {", ".join(LAUNCHERS)}.')
    if launcher == 'none' or torch_dist.is_initialized():
        return
    if torch.cuda.is_available():
        init_dist(launcher, **dict(dict(backend='nccl'), **(dist_cfg or {})))
    elif launcher == 'pytorch':
        if 'RANK' not in os.environ:
            raise ConfigError('--launcher pytorch expects to be started by torchrun '
                              '(tools/dist_train.sh).')
        torch_dist.init_process_group(backend='gloo')
        # leave together and shut gloo down while the interpreter is alive: a process that
        # exits while another still talks to it can abort in gloo's threads ("terminate
        # called without an active exception")
        atexit.register(_leave_process_group)
    else:
        raise ConfigError(f'--launcher {launcher} needs GPUs; on CPUs use torchrun '
                          '(tools/dist_train.sh) with --launcher pytorch.')


def _leave_process_group() -> None:
    if torch_dist.is_initialized():
        gc.collect()  # the finished Runner's DDP wrapper goes before the group it uses
        torch_dist.barrier()
        torch_dist.destroy_process_group()


def configure_distributed(cfg: Config) -> None:
    """Join the process group of ``cfg.launcher`` (on GPUs with ``env_cfg.dist_cfg``, which
    MMEngine would use: the group is joined before the Runner exists) and, on CPU, give DDP no
    device ids."""
    launcher = cfg.get('launcher', 'none')
    setup_distributed(launcher, (cfg.get('env_cfg') or {}).get('dist_cfg'))
    if launcher == 'none' or torch.cuda.is_available():
        return
    if cfg.get('sync_bn'):
        raise ConfigError('SyncBatchNorm runs on GPUs only; remove `sync_bn` for a CPU run.')
    wrapper = dict(cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper


def main_process_first(function: Callable[[], T]) -> T:
    """Run ``function`` on rank 0, then on the other ranks (e.g. download once, then read);
    returns what it returned in this process."""
    result = function() if is_main_process() else None
    barrier()
    if not is_main_process():
        result = function()
    return result
