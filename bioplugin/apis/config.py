"""Load a config and apply the command-line overrides every tool shares."""
import difflib
import importlib.util
import os
import os.path as osp
from typing import Optional, Sequence

import torch
from mmengine.config import Config

from mmpretrain.registry import DATASETS

from ..engine.precision import resolve_precision
from ..errors import ConfigError

SPLITS = {'train': 'train_dataloader', 'val': 'val_dataloader', 'test': 'test_dataloader'}
DATALOADERS = tuple(SPLITS.values())


def load_config(config: str,
                cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None,
                data_root: Optional[str] = None) -> Config:
    """Read ``config``, merge ``--cfg-options`` and apply the shared conventions.

    - The top-level ``data_root`` (or ``data_root`` given here) is applied to every split;
      a split's own ``data_root`` in ``cfg_options`` still wins.
    - ``work_dir`` defaults to ``work_dirs/<config name>``.
    - ``num_workers='auto'`` is resolved; ``persistent_workers`` is switched off for loaders
      with ``num_workers=0``.
    """
    if not osp.isfile(config):
        raise ConfigError(f'Config file {config!r} does not exist.')
    cfg = Config.fromfile(config)
    cfg_options = dict(cfg_options or {})
    _check_override_keys(cfg, cfg_options)
    if data_root is not None:
        cfg_options['data_root'] = data_root
    if 'data_root' in cfg_options:
        cfg.data_root = cfg_options['data_root']
    apply_data_root(cfg)
    cfg.merge_from_dict(cfg_options)  # a per-split data_root given here wins
    fix_dataloader_workers(cfg)
    cfg.work_dir = work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(config))[0])
    return cfg


def _check_override_keys(cfg: Config, cfg_options: dict) -> None:
    """Refuse ``--cfg-options`` keys that are typos: a parent that does not exist, or a new
    key that is one slip away from an existing one (``max_epoch`` for ``max_epochs``)."""
    tree = cfg.to_dict()
    for key in cfg_options:
        parts = key.split('.')
        node = tree
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part) if isinstance(node, dict) else None
            if child is None and isinstance(node, (list, tuple)) and part.isdigit():
                child = node[int(part)] if int(part) < len(node) else None
            if not isinstance(child, (dict, list, tuple)):
                raise ConfigError(
                    f'--cfg-options key {key!r}: {".".join(parts[:depth + 1])!r} is not a '
                    'section of this config; check the spelling.')
            node = child
        leaf = parts[-1]
        if isinstance(node, dict) and leaf not in node:
            close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1, cutoff=0.8)
            if close:
                raise ConfigError(f'--cfg-options key {key!r} is unknown; did you mean '
                                  f'{".".join(parts[:-1] + close)!r}?')


def apply_data_root(cfg: Config) -> None:
    """Make the top-level ``data_root`` the data root of the train, val and test datasets."""
    data_root = cfg.get('data_root')
    if data_root is None:
        return
    for name in DATALOADERS:
        loader = cfg.get(name)
        if loader and 'dataset' in loader and 'data_root' in loader.dataset:
            loader.dataset.data_root = data_root


def fix_dataloader_workers(cfg: Config) -> None:
    """``num_workers='auto'`` becomes one loader process per CPU core (at most 8, shared
    between the processes of a multi-GPU run); ``persistent_workers`` needs worker
    processes; pinned memory only helps a GPU."""
    for name in DATALOADERS:
        loader = cfg.get(name)
        if not loader:
            continue
        if loader.get('num_workers') == 'auto':
            loader.num_workers = auto_num_workers()
        if loader.get('num_workers', 0) == 0:
            loader.persistent_workers = False
        if torch.cuda.is_available():
            loader.setdefault('pin_memory', True)


def auto_num_workers(max_workers: int = 8) -> int:
    """Loader processes per training process: the CPU cores this process may use, divided
    among the GPUs of the machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    return max(1, min(max_workers, (cores or 1) // max(1, torch.cuda.device_count())))


def apply_precision(cfg: Config, precision: Optional[str] = None) -> str:
    """Resolve ``precision`` (else the config's ``precision``, default ``'auto'``) for this
    machine and configure training and validation for it; returns ``'bf16'``, ``'fp16'`` or
    ``'fp32'``. On a GPU, mixed precision also trains channels-last (on CPUs this torch
    build's oneDNN corrupts memory in channels-last backward passes, so training stays NCHW;
    inference uses channels-last everywhere). In a config::

        precision = 'auto'   # or 'bf16', 'fp16' (CUDA), 'fp32'
    """
    device_type = 'cuda' if torch.cuda.is_available() else 'cpu'
    cfg.precision = resolved = resolve_precision(precision or cfg.get('precision', 'auto'),
                                                 device_type)
    if resolved == 'fp32':
        return resolved
    if resolved == 'fp16':  # float16 needs loss scaling
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    else:
        cfg.optim_wrapper.type = 'AutocastOptimWrapper'
    for name in ('val_cfg', 'test_cfg'):
        if cfg.get(name) is not None:
            cfg[name].fp16 = True  # MMEngine's flag for autocast (bfloat16 on CPU)
    hooks = list(cfg.get('custom_hooks') or [])
    if device_type == 'cuda' and not any(h.get('type') == 'ChannelsLastHook' for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='ChannelsLastHook')]
    return resolved


def set_finetuning(cfg: Config, freeze_stages: Optional[int] = None,
                   head_lr_mult: Optional[float] = None) -> None:
    """The usual fine-tuning knobs, written into the config.

    ``freeze_stages=N`` freezes the stem and the first N backbone stages (``0``: stem only);
    ``head_lr_mult=M`` trains the head with M times the base learning rate. In a config::

        model = dict(backbone=dict(frozen_stages=2))
        optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'head': dict(lr_mult=10.)}))
    """
    if freeze_stages is not None:
        num_stages = cfg.model.backbone.get('num_stages', 4)
        if not -1 <= freeze_stages <= num_stages:
            raise ConfigError(f'--freeze-stages must be between -1 (none) and {num_stages}.')
        cfg.model.backbone.frozen_stages = freeze_stages
    if head_lr_mult is not None:
        if head_lr_mult <= 0:
            raise ConfigError('--head-lr-mult must be positive.')
        paramwise = dict(cfg.optim_wrapper.get('paramwise_cfg') or {})
        paramwise['custom_keys'] = dict(paramwise.get('custom_keys') or {},
                                        head=dict(lr_mult=head_lr_mult))
        cfg.optim_wrapper.paramwise_cfg = paramwise


def enable_tensorboard(cfg: Config) -> None:
    """Also log scalars for TensorBoard (``<work_dir>/<run>/vis_data/``); in a config::

        visualizer = dict(vis_backends=[dict(type='LocalVisBackend'),
                                        dict(type='TensorboardVisBackend')])
    """
    if importlib.util.find_spec('tensorboard') is None:
        raise ConfigError('TensorBoard logging needs the tensorboard package: '
                          'pip install tensorboard')
    backends = list(cfg.visualizer.get('vis_backends') or [dict(type='LocalVisBackend')])
    if not any(backend.get('type') == 'TensorboardVisBackend' for backend in backends):
        backends.append(dict(type='TensorboardVisBackend'))
    cfg.visualizer.vis_backends = backends


def set_seed(cfg: Config, seed: Optional[int]) -> None:
    if seed is not None:
        cfg.randomness = dict(cfg.get('randomness', {}), seed=seed)


def build_split_dataset(cfg: Config, split: str, classes: Optional[Sequence[str]] = None):
    """The dataset of ``split`` ('train', 'val' or 'test') without its pipeline: file lists,
    labels and class names, for checks and for prediction. ``classes`` replaces the config's
    class source (e.g. the class list a checkpoint was trained on)."""
    if split not in SPLITS:
        raise ConfigError(f'Unknown split {split!r}; choose one of {", ".join(SPLITS)}.')
    dataset_cfg = dict(cfg[SPLITS[split]].dataset, pipeline=[])
    if classes is not None:
        dataset_cfg.pop('classes_from', None)
        dataset_cfg['classes'] = list(classes)
    return DATASETS.build(dataset_cfg)
