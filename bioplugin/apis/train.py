"""Training entry points: ``tools/train.py`` is a thin CLI over these."""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..engine import checkpoint_io
from ..engine.work_dir import (WorkDirLock, archive_previous_run, check_fresh_start,
                               check_not_in_use, check_nothing_damaged)
from ..errors import ConfigError
from .config import load_config
from .options import enable_tensorboard, set_finetuning, set_seed


def build_train_config(config: str,
                       work_dir: Optional[str] = None,
                       resume: Optional[str] = None,
                       cfg_options: Optional[dict] = None,
                       data_root: Optional[str] = None,
                       precision: Optional[str] = None,
                       seed: Optional[int] = None,
                       freeze_stages: Optional[int] = None,
                       head_lr_mult: Optional[float] = None,
                       tensorboard: bool = False,
                       launcher: str = 'none',
                       auto_scale_lr: bool = False,
                       restart: bool = False) -> Config:
    """The training config with command-line choices written in as config keys.

    ``resume='auto'`` continues from the latest complete checkpoint of ``work_dir``;
    ``'if_any'`` does so when there is one and starts afresh in a work dir without checkpoints
    (a requeued job; damaged checkpoints stop it); a path continues from that checkpoint.
    ``precision`` (``'auto'``, ``'bf16'``, ``'fp16'``, ``'fp32'``) overrides the config's
    ``precision``. ``launcher`` is ``'none'``,
    ``'pytorch'`` (torchrun) or ``'slurm'``. A fresh start into a work dir that holds an
    earlier run's checkpoints is refused unless ``restart`` (:func:`restart` moves them).
    """
    cfg = load_config(config, cfg_options, work_dir, data_root)
    if precision is not None:
        cfg.precision = precision
    set_seed(cfg, seed)
    set_finetuning(cfg, freeze_stages, head_lr_mult)
    if tensorboard:
        enable_tensorboard(cfg)
    cfg.launcher = launcher
    if auto_scale_lr:
        # lr × (processes × batch size) / auto_scale_lr.base_batch_size
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr') or dict(base_batch_size=64),
                                 enable=True)
    check_not_in_use(cfg.work_dir)  # first: what is there may be a running run's
    if resume == 'if_any':
        resume = 'auto' if checkpoint_io.latest_complete_checkpoint(cfg.work_dir) else None
        if resume is None:  # never start over checkpoints that are there but damaged
            check_nothing_damaged(cfg.work_dir)
    elif resume is None and not restart:
        check_fresh_start(cfg.work_dir)  # before the Runner writes anything there
    if resume is not None:
        cfg.resume = True
        cfg.load_from = None if resume == 'auto' else resume
    return cfg


def build_runner(cfg: Config) -> Runner:
    """The Runner a config names (``runner_type``), as MMPretrain's tools build it."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


def train(cfg: Config, trust_checkpoint: bool = False) -> Runner:
    """Build the config's Runner and train; returns the Runner.

    ``trust_checkpoint`` lets the resume / ``load_from`` checkpoint hold pickled objects
    beyond weights (only for files you trust).
    """
    if trust_checkpoint:
        start = cfg.get('load_from') or (cfg.get('resume') and
                                         checkpoint_io.latest_complete_checkpoint(cfg.work_dir))
        if start:
            checkpoint_io.trust_checkpoint(start)
    runner = build_runner(cfg)
    runner.train()
    return runner


def restart(work_dir: str, launcher: str = 'none', config: Optional[str] = None) -> Optional[str]:
    """Start over on purpose in ``work_dir``: an earlier run's files are moved into
    ``<work_dir>/previous_<time>/`` (returned; None when there were none), nothing is
    deleted (``tools/train.py --restart``); ``config``, if it lives there, stays. Not while
    another run trains there, and not from the processes of a multi-process launch (each would
    move the files)."""
    if launcher != 'none':
        raise ConfigError('--restart moves files of the work dir: run it once without '
                          '--launcher, or train into another --work-dir.')
    if not osp.isdir(work_dir):
        return None
    lock = WorkDirLock(work_dir).acquire()
    try:
        return archive_previous_run(work_dir, keep=[config] if config else ())
    finally:
        lock.release()
