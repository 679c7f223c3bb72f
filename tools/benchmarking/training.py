"""Training throughput: the Runner of ``build_train_config``'s recipe vs two bare loops.

- ``seed_training``: the seed's plain fp32 NCHW loop (torchvision chain, label-smoothing CE,
  AdamW, gradient-norm clipping), the reference of the speed-up; on a GPU also with float16
  autocast and loss scaling (the plain way to mixed precision).
- ``mirror_training``: the Runner's own data loader, optimizer, autocast dtype and memory
  format without the Runner, the reference of the Runner's overhead.

Every case times each iteration from the end of the previous one (data wait included), like
MMEngine's logged ``time``, and reports the median after the warm-up iterations, and the share
of that time spent waiting for the loader (MMEngine's ``data_time``).
"""
import os.path as osp
import time
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import AmpOptimWrapper, build_optim_wrapper
from mmengine.runner import Runner
from mmengine.utils.dl_utils import set_multi_processing
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from bioplugin.apis.train import build_runner, build_train_config

from .common import (BenchmarkSettings, build_model, is_channels_last, iteration_rate,
                     model_options, synchronize)
from .reference import (SEED_CLIP_NORM, SEED_LABEL_SMOOTHING, SEED_LR, SEED_WEIGHT_DECAY,
                        seed_train_transform)


def training_precision(optim_wrapper, model: nn.Module) -> dict:
    """The autocast dtype (``None``: float32), memory format and loss scaling of a training
    run, read from its optim wrapper and model."""
    device_type = next(model.parameters()).device.type
    dtype = getattr(optim_wrapper, 'cast_dtype', None)
    if dtype is None and isinstance(optim_wrapper, AmpOptimWrapper):
        dtype = torch.get_autocast_dtype(device_type)
    return dict(autocast=str(dtype).replace('torch.', '') if dtype else None,
                channels_last=is_channels_last(model),
                loss_scale=getattr(optim_wrapper, 'loss_scaler', None) is not None)


class BenchmarkTimerHook(Hook):
    """Read the clock after every training iteration, after all other hooks, and record the
    precision the Runner trains with after its first iteration. Registered in no registry: the
    benchmark adds an instance with ``runner.register_hook``."""

    priority = 'LOWEST'

    def __init__(self):
        self.stamps = []
        self.starts = []  # when each iteration had its batch
        self.precision = None

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.starts.append(time.perf_counter())

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        synchronize(next(model.parameters()).device.type)
        self.stamps.append(time.perf_counter())
        if self.precision is None:
            self.precision = training_precision(runner.optim_wrapper, model)


def training_config(settings: BenchmarkSettings, data_root: str, work_dir: str) -> Config:
    """The recipe for one epoch of ``warmup + iters`` batches on ``data_root/train``: no
    validation (it would begin past the end), no checkpoint, no pretrained download, rare
    logging."""
    options = dict(model_options(settings), **{
        'train_dataloader.batch_size': settings.batch_size,
        'train_dataloader.num_workers': settings.num_workers,
        'train_cfg.max_epochs': 1,
        'train_cfg.val_begin': 10**6,  # MMEngine validates after the last epoch otherwise
        'train_cfg.val_interval': 10**6,
        'default_hooks.checkpoint': None,
        'default_hooks.logger.interval': 10**6,
    })
    return build_train_config(settings.config, work_dir=work_dir, cfg_options=options,
                              data_root=data_root)


def runner_training(settings: BenchmarkSettings, data_root: str, work_dir: str) -> dict:
    """Images/s of ``tools/train.py``'s Runner, and the precision it used."""
    runner = build_runner(training_config(settings, data_root, work_dir))
    timer = BenchmarkTimerHook()
    runner.register_hook(timer)
    runner.train()
    return dict(iteration_rate(timer.stamps, settings.warmup, settings.batch_size,
                               timer.starts), precision=timer.precision)


def _timed_loop(step, loader, settings: BenchmarkSettings) -> dict:
    """Run ``step`` on every batch: :func:`iteration_rate` of the clock readings when each
    batch arrived and after each step."""
    starts, stamps = [], []
    for batch in loader:
        starts.append(time.perf_counter())
        step(batch)
        synchronize(settings.device)
        stamps.append(time.perf_counter())
    return iteration_rate(stamps, settings.warmup, settings.batch_size, starts)


def _optimizer_step(loss: torch.Tensor, optimizer, scaler=None, clip=None) -> None:
    """Backward, the optimizer step and zeroed gradients, as MMEngine's wrappers do it: with a
    ``GradScaler`` the loss is scaled and the gradients unscaled before ``clip()``."""
    (scaler.scale(loss) if scaler else loss).backward()
    if scaler:
        scaler.unscale_(optimizer)
    if clip:
        clip()
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad()


def seed_training(settings: BenchmarkSettings, data_root: str, work_dir: str,
                  autocast_dtype: Optional[str] = None) -> dict:
    """Images/s of the seed's bare NCHW loop on the same model: float32, or with
    ``autocast_dtype='float16'`` (a GPU) the plain mixed-precision loop, autocast and a
    ``GradScaler`` (gradients unscaled before clipping)."""
    device = settings.device
    model = build_model(training_config(settings, data_root, work_dir)).to(device).train()
    dataset = ImageFolder(osp.join(data_root, 'train'), seed_train_transform())
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=True,
                        num_workers=settings.num_workers, drop_last=True)
    criterion = nn.CrossEntropyLoss(label_smoothing=SEED_LABEL_SMOOTHING)
    optimizer = torch.optim.AdamW(model.parameters(), lr=SEED_LR,
                                  weight_decay=SEED_WEIGHT_DECAY)
    device_type = torch.device(device).type
    dtype = getattr(torch, autocast_dtype) if autocast_dtype else None
    scaler = torch.amp.GradScaler(device_type) if dtype == torch.float16 else None

    def step(batch):
        inputs, labels = (tensor.to(device) for tensor in batch)
        with torch.autocast(device_type, dtype=dtype, enabled=dtype is not None):
            loss = criterion(model(inputs, mode='tensor'), labels)
        _optimizer_step(loss, optimizer, scaler,
                        lambda: nn.utils.clip_grad_norm_(model.parameters(), SEED_CLIP_NORM))

    result = _timed_loop(step, loader, settings)
    if dtype is not None:
        result['precision'] = dict(autocast=autocast_dtype, channels_last=False,
                                   loss_scale=scaler is not None)
    return result


def mirror_training(settings: BenchmarkSettings, data_root: str, work_dir: str,
                    precision: dict) -> dict:
    """Images/s of a bare loop doing what the Runner's iteration does, with the Runner's data
    loader, optimizer, gradient clipping and ``precision`` (from ``runner_training``)."""
    device = settings.device
    cfg = training_config(settings, data_root, work_dir)
    env = cfg.get('env_cfg', {})
    set_multi_processing(**env.get('mp_cfg', {}), distributed=False)
    torch.backends.cudnn.benchmark = bool(env.get('cudnn_benchmark'))
    memory_format = torch.channels_last if precision['channels_last'] else torch.preserve_format
    model = build_model(cfg).to(device, memory_format=memory_format).train()
    loader = Runner.build_dataloader(cfg.train_dataloader,
                                     seed=cfg.get('randomness', {}).get('seed'))
    optimizer = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    clip = dict(cfg.optim_wrapper.get('clip_grad') or {})
    clip_grad = {'norm': nn.utils.clip_grad_norm_,
                 'value': nn.utils.clip_grad_value_}[clip.pop('type', 'norm')]
    dtype = precision['autocast']
    autocast = dict(device_type=torch.device(device).type, enabled=dtype is not None,
                    dtype=getattr(torch, dtype) if dtype else None)
    scaler = torch.amp.GradScaler(autocast['device_type']) if precision['loss_scale'] else None
    params = [p for p in model.parameters() if p.requires_grad]

    def step(batch):
        with torch.autocast(**autocast):
            data = model.data_preprocessor(batch, True)
            if precision['channels_last']:
                data['inputs'] = data['inputs'].contiguous(memory_format=torch.channels_last)
            loss, _ = model.parse_losses(model(**data, mode='loss'))
        _optimizer_step(loss, optimizer, scaler,
                        (lambda: clip_grad(params, **clip)) if clip else None)

    return _timed_loop(step, loader, settings)
