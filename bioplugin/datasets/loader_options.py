"""Data loader settings that depend on the machine: worker count, persistence, pinned memory.

``BioRunner`` resolves them for every loader of a config before MMEngine builds it::

    train_dataloader = dict(num_workers='auto', persistent_workers=True, ...)
"""
import os

import torch
from mmengine.config import Config

from ..errors import ConfigError

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
# the loader of each split
SPLITS = dict(zip(('train', 'val', 'test'), DATALOADERS))


def auto_num_workers(max_workers: int = 8) -> int:
    """Loader processes per training process: the CPU cores this process may use, divided
    among the GPUs of the machine (at most ``max_workers``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return max(1, min(max_workers, (cores or 1) // max(1, torch.cuda.device_count())))


def resolve_loader_options(cfg: Config) -> None:
    """``num_workers='auto'`` becomes :func:`auto_num_workers`; ``persistent_workers`` needs
    worker processes; pinned memory only helps a GPU (and is switched off without one)."""
    for name in DATALOADERS:
        loader = cfg.get(name)
        if not loader:
            continue
        workers = loader.get('num_workers', 0)
        if workers == 'auto':
            loader.num_workers = workers = auto_num_workers()
        if not isinstance(workers, int) or workers < 0:
            raise ConfigError(f"{name}.num_workers={workers!r}: use 'auto' or a count >= 0.")
        if workers == 0:
            loader.persistent_workers = False
        if torch.cuda.is_available():
            loader.setdefault('pin_memory', True)
        else:
            loader.pin_memory = False
