"""Training entry points: ``tools/train.py`` is a thin CLI over these."""
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..datasets.class_balance import class_counts, inverse_frequency_weights
from ..engine.checkpoint_io import (latest_complete_checkpoint, read_checkpoint,
                                    trust_checkpoint)
from ..engine.pretrained import iter_pretrained_init_cfgs, resolve_pretrained_checkpoints
from ..errors import CheckpointError, ConfigError
from ..evaluation import fit_topk
from ..fileio import check_work_dir
from .config import (apply_precision, build_split_dataset, enable_tensorboard, load_config,
                     set_finetuning, set_seed)
from .distributed import configure_distributed_training, main_process_first, setup_distributed


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
                       auto_scale_lr: bool = False) -> Config:
    """The training config with command-line choices applied.

    ``resume='auto'`` continues from the latest checkpoint of ``work_dir``; a path continues
    from that checkpoint. ``precision`` (``'auto'``, ``'bf16'``, ``'fp16'``, ``'fp32'``)
    overrides the config's ``precision``. ``launcher`` is ``'none'``, ``'pytorch'`` (torchrun) or ``'slurm'``.
    """
    cfg = load_config(config, cfg_options, work_dir, data_root)
    apply_precision(cfg, precision)
    set_seed(cfg, seed)
    set_finetuning(cfg, freeze_stages, head_lr_mult)
    if tensorboard:
        enable_tensorboard(cfg)
    configure_distributed_training(cfg, launcher)
    if auto_scale_lr:
        # lr × (processes × batch size) / auto_scale_lr.base_batch_size
        cfg.auto_scale_lr = dict(cfg.get('auto_scale_lr') or dict(base_batch_size=64),
                                 enable=True)
    if resume is not None:
        cfg.resume = True
        cfg.load_from = None if resume == 'auto' else resume
    return cfg


def resolve_start_checkpoint(cfg: Config, trust: bool = False) -> Optional[str]:
    """The checkpoint the run starts from (``--resume`` target or ``load_from``), checked.

    ``--resume`` without a path takes the checkpoint ``last_checkpoint`` names or, if a crash
    left that one missing or incomplete, the newest complete epoch checkpoint; the choice is
    written into ``cfg.load_from``. The file is opened safely (memory-mapped, no tensor
    read) so a refused or broken checkpoint fails before the model is built. ``trust``
    allows a checkpoint that holds other pickled objects (``--trust-checkpoint``).
    """
    path = cfg.get('load_from')
    if cfg.get('resume') and not path:
        path = latest_complete_checkpoint(cfg.work_dir)
        if path is None:
            raise CheckpointError(
                f'Nothing to resume in {cfg.work_dir!r}: it has no complete checkpoint. Pass '
                'the --work-dir of an earlier run, or run without --resume to start training.')
        cfg.load_from = path
    if not path:
        return None
    if trust:
        trust_checkpoint(path)
    read_checkpoint(path, mmap=True)
    print_log(f"{'Resuming' if cfg.get('resume') else 'Starting'} from {path}", logger='current')
    return path


def check_training_data(cfg: Config) -> None:
    """Compare the training folder with the model before any weights are built.

    The class count must match the head; the split must fill at least one batch; top-k
    accuracies larger than the class count are dropped from the evaluators.
    """
    loader = cfg.train_dataloader
    dataset = build_split_dataset(cfg, 'train')
    classes = dataset.metainfo.get('classes') or ()
    head = cfg.model.get('head', {})
    if classes and head.get('num_classes') not in (None, len(classes)):
        raise ConfigError(
            f'The training data has {len(classes)} classes but the model head has '
            f'{head.num_classes} outputs; set `--cfg-options model.head.num_classes='
            f'{len(classes)}`.')
    if loader.get('drop_last') and len(dataset) < loader.batch_size:
        raise ConfigError(
            f'The training split has {len(dataset)} images, fewer than one batch of '
            f'{loader.batch_size}; lower `train_dataloader.batch_size`.')
    apply_class_weights(cfg, dataset)
    if classes:
        for name in ('val_evaluator', 'test_evaluator'):
            fit_topk(cfg.get(name), len(classes))


CLASS_WEIGHT_MODES = {'inverse_frequency': 'uniform', 'sqrt_inverse_frequency': 'sqrt'}


def apply_class_weights(cfg: Config, dataset) -> None:
    """Turn ``loss.class_weight='inverse_frequency'`` (or ``'sqrt_inverse_frequency'``) into
    per-class weights computed from the training folders::

        model = dict(head=dict(loss=dict(class_weight='inverse_frequency')))
    """
    loss = cfg.model.get('head', {}).get('loss', {})
    weight = loss.get('class_weight') if isinstance(loss, dict) else None
    if not isinstance(weight, str):
        return
    if weight not in CLASS_WEIGHT_MODES:
        raise ConfigError(f'loss.class_weight={weight!r}: use a list of weights or one of '
                          f'{", ".join(CLASS_WEIGHT_MODES)}.')
    weights = inverse_frequency_weights(class_counts(dataset), CLASS_WEIGHT_MODES[weight])
    cfg.model.head.loss.class_weight = [round(float(w), 6) for w in weights]
    print_log(f'Loss class weights ({weight}): ' + ', '.join(f'{w:.3f}' for w in weights),
              logger='current')


def train(cfg: Config, trust_checkpoint: bool = False) -> Runner:
    """Check the inputs, build MMEngine's Runner from ``cfg`` and train. Returns the Runner.

    ``trust_checkpoint`` lets the resume / ``load_from`` checkpoint hold pickled objects
    beyond weights (only for files you trust).
    """
    setup_distributed(cfg.get('launcher', 'none'))
    check_work_dir(cfg.work_dir)
    resolve_start_checkpoint(cfg, trust_checkpoint)
    check_training_data(cfg)
    if cfg.get('resume'):
        # every weight comes from the checkpoint: skip the ImageNet initialisation
        cfg.merge_from_dict({key: None for key, _, _ in iter_pretrained_init_cfgs(cfg.model)})
    else:
        # the first process downloads and converts; the others then find the cached files
        main_process_first(lambda: resolve_pretrained_checkpoints(cfg.model))
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()
    return runner
