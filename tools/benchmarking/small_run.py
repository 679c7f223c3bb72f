"""Whole training runs on a small set: ``tools/train.py`` against the plain PyTorch loop
(``plain_run.py``), phase by phase, each in a fresh process.

On a small set a run is short, so what the Runner does around the iterations (start-up, the
epoch checkpoints, validation set-up, the end-of-run calibration) weighs as much as the
iterations. Phases, from wall-clock stamps (``PhaseTimerHook`` in ours):

- start-up: process launch to the first training epoch (imports, config, model, loaders);
- training epochs and validation: their summed wall time;
- checkpoints: from the end of one validation to the start of the next epoch (and to the end
  of training after the last): epoch and best checkpoints, and whatever else runs there;
- end: the end of training to the process's exit (ours: calibration of the best checkpoint,
  unless ``calibrate=False``).
"""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

from mmengine.config import Config

from bioplugin.apis.config import load_config
from bioplugin.datasets.folder_layout import class_folders

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPO = osp.dirname(TOOLS)
PHASES = ('start-up', 'training epochs', 'validation', 'checkpoints', 'end')


def phases(stamps: dict, launched: float, exited: float) -> Dict[str, float]:
    """Seconds per phase (and ``total``) from a run's stamps (``train`` and ``val``:
    ``[start, end]`` per epoch, ``done``: end of training) and its launch / exit times."""
    train, val = stamps['train'], stamps['val']
    if not train or len(val) != len(train):
        raise ValueError(f'expected one validation per epoch, got {len(train)} training '
                         f'epochs and {len(val)} validations')
    next_starts = [epoch[0] for epoch in train[1:]] + [stamps['done']]
    return {'start-up': train[0][0] - launched,
            'training epochs': sum(end - start for start, end in train),
            'validation': sum(end - start for start, end in val),
            'checkpoints': sum(start - end for (_, end), start in zip(val, next_starts)),
            'end': exited - stamps['done'],
            'total': exited - launched}


def _timed(command: List[str], log_file: str, env: Optional[dict] = None) -> tuple:
    """Run ``command``; its launch and exit wall-clock times."""
    with open(log_file, 'w') as log:
        launched = time.time()
        result = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                env=dict(os.environ, **(env or {})))
        exited = time.time()
    if result.returncode:
        raise RuntimeError(f'{" ".join(command)} failed (exit {result.returncode}); see '
                           f'{log_file}')
    return launched, exited


def timed_config(config: str, stamps_file: str, work_dir: str) -> str:
    """``config`` plus :class:`~benchmarking.phase_timer.PhaseTimerHook`, as a new file."""
    hooks = list(Config.fromfile(config).get('custom_hooks', []))
    hooks.append(dict(type='PhaseTimerHook', file=stamps_file))
    path = osp.join(work_dir, 'timed_config.py')
    with open(path, 'w') as file:
        file.write(f'_base_ = [{osp.abspath(config)!r}]\n'
                   "custom_imports = dict(imports=['bioplugin', 'benchmarking.phase_timer'], "
                   'allow_failed_imports=False)\n'
                   f'custom_hooks = {hooks!r}\n')
    return path


def run_ours(config: str, data_root: str, work_dir: str, options: Dict[str, object],
             calibrate: bool = True) -> Dict[str, float]:
    """``tools/train.py`` on ``config`` with ``options`` (``--cfg-options``); its phases."""
    os.makedirs(work_dir, exist_ok=True)
    stamps_file = osp.join(work_dir, 'phases.json')
    command = [sys.executable, osp.join(TOOLS, 'train.py'),
               timed_config(config, stamps_file, work_dir), '--data-root', data_root,
               '--work-dir', work_dir, '--restart', '--cfg-options',
               *(f'{key}={value}' for key, value in options.items())]
    if not calibrate:
        command.append('--no-calibrate')
    env = dict(PYTHONPATH=os.pathsep.join(filter(None, [TOOLS, os.environ.get('PYTHONPATH')])))
    launched, exited = _timed(command, osp.join(work_dir, 'run.log'), env)
    with open(stamps_file) as file:
        return phases(json.load(file), launched, exited)


def plain_arguments(cfg: Config, num_classes: int, epochs: int, batch_size: int,
                    num_workers: int) -> List[str]:
    """``plain_run.py``'s model and loop options for the ResNet / ResNeXt model of ``cfg``."""
    backbone, head = cfg.model.backbone, cfg.model.head
    if backbone.type not in ('ResNet', 'ResNeXt'):
        raise ValueError(f'the plain loop builds ResNet / ResNeXt backbones, not '
                         f'{backbone.type}')
    widths = (backbone.get('stem_channels', 64), backbone.get('base_channels', 64))
    if widths != (64, 64):
        raise ValueError(f'the plain loop builds torchvision widths (stem and base 64 '
                         f'channels), not {widths}')
    crop = [step for step in cfg.test_dataloader.dataset.pipeline
            if step['type'] == 'CenterCrop']
    size = crop[0]['crop_size'] if crop else 224
    values = dict(depth=backbone.depth, groups=backbone.get('groups', 1),
                  width_per_group=backbone.get('width_per_group', 64),
                  hidden_channels=head.get('hidden_channels', 512), num_classes=num_classes,
                  image_size=size if isinstance(size, int) else size[0], epochs=epochs,
                  batch_size=batch_size, num_workers=num_workers)
    return [item for key, value in values.items()
            for item in (f'--{key.replace("_", "-")}', str(value))]


def run_plain(config: str, data_root: str, work_dir: str, num_classes: int, epochs: int,
              batch_size: int, num_workers: int) -> Dict[str, float]:
    """``plain_run.py`` with the model and loop of ``config``; its phases."""
    os.makedirs(work_dir, exist_ok=True)
    stamps_file = osp.join(work_dir, 'phases.json')
    command = [sys.executable, osp.join(TOOLS, 'benchmarking', 'plain_run.py'), data_root,
               stamps_file, *plain_arguments(load_config(config), num_classes, epochs,
                                             batch_size, num_workers)]
    launched, exited = _timed(command, osp.join(work_dir, 'run.log'))
    with open(stamps_file) as file:
        return phases(json.load(file), launched, exited)


def compare_small_runs(config: str, data_root: str, work_dir: str, epochs: int = 5,
                       batch_size: int = 16, num_workers: int = 2, repeats: int = 1,
                       calibrate: bool = True, log=print) -> dict:
    """Ours and the plain loop ``repeats`` times each, alternating; per phase the median
    seconds of each side. Both start from random weights."""
    num_classes = len(class_folders(osp.join(data_root, 'train')))
    options = {'train_cfg.max_epochs': epochs, 'train_dataloader.batch_size': batch_size,
               'train_dataloader.num_workers': num_workers,
               'val_dataloader.num_workers': num_workers,
               'model.head.num_classes': num_classes, 'model.backbone.init_cfg': None}
    runs = dict(ours=[], plain=[])
    for repeat in range(repeats):
        log(f'ours, run {repeat + 1} of {repeats} ...')
        runs['ours'].append(run_ours(config, data_root, osp.join(work_dir, f'ours_{repeat}'),
                                     options, calibrate))
        log(f'plain loop, run {repeat + 1} of {repeats} ...')
        runs['plain'].append(run_plain(config, data_root, osp.join(work_dir, f'plain_{repeat}'),
                                       num_classes, epochs, batch_size, num_workers))
    median = {side: {phase: statistics.median(run[phase] for run in results)
                     for phase in (*PHASES, 'total')}
              for side, results in runs.items()}
    return dict(runs=runs, median=median, epochs=epochs, calibrate=calibrate)


def format_phases(report: dict) -> str:
    """A table: phase, ours s, plain s, ours − plain; then the ratio of the totals, with and
    without the end phase."""
    ours, plain = report['median']['ours'], report['median']['plain']
    lines = [f"{'phase':<16} {'ours s':>8} {'plain s':>8} {'ours - plain':>13}"]
    for phase in (*PHASES, 'total'):
        lines.append(f'{phase:<16} {ours[phase]:8.1f} {plain[phase]:8.1f} '
                     f'{ours[phase] - plain[phase]:+13.1f}')
    training = {side: values['total'] - values['end'] for side, values in
                (('ours', ours), ('plain', plain))}
    lines.append(f"ours / plain: {ours['total'] / plain['total']:.2f}x the whole run, "
                 f"{training['ours'] / training['plain']:.2f}x without the end phase")
    return '\n'.join(lines)
