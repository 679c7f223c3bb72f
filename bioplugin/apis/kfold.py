"""K-fold cross-validation: every fold a normal training run, the summary mean ± std.

``tools/kfold.py`` is the command line. Under the parent work dir::

    folds/fold_<k>/{train,val}/<class>/   links to the images (train+val of the data root)
    seed_<s>/fold_<k>/                    the run's work dir: checkpoints, logs, fold_result.json
    kfold_summary.json                    mean ± std of top-1, macro F1 and per-class recall

A run whose ``fold_result.json`` exists is finished and not run again; a run killed half-way
continues from its latest checkpoint.
"""
import json
import os.path as osp
import time
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from ..datasets.curation.folds import (assign_folds, fold_shares, labeled_images, read_groups,
                                       write_split)
from ..fileio import atomic_write
from .evaluate import evaluate
from .train import build_train_config, train

RESULT = 'fold_result.json'
SUMMARY = 'kfold_summary.json'


def prepare_folds(data_root: str, parent: str, folds: int, group_file: Optional[str] = None,
                  split_seed: int = 0) -> dict:
    """Assign the labeled images to ``folds`` folds and write each fold's folder; returns
    ``roots`` (one data root per fold) and ``shares`` (images per class and fold)."""
    images = labeled_images(data_root)
    groups = read_groups(group_file, images) if group_file else None
    fold_of = assign_folds(images.label, folds, groups, split_seed)
    roots = [write_split(images, fold_of == fold, osp.join(parent, 'folds', f'fold_{fold}'))
             for fold in range(folds)]
    return dict(roots=roots, shares=fold_shares(images, fold_of))


def run_fold(config: str, data_root: str, work_dir: str, seed: int,
             cfg_options: Optional[dict] = None) -> dict:
    """Train one fold (continuing a killed run) and evaluate its best checkpoint on the
    fold's val images; the result is saved as ``fold_result.json`` in ``work_dir``."""
    start = time.perf_counter()
    cfg = build_train_config(config, work_dir=work_dir, resume='if_any', cfg_options=cfg_options,
                             data_root=data_root, seed=seed)
    runner = train(cfg)
    best = runner.message_hub.get_info('best_ckpt') or work_dir
    seconds = time.perf_counter() - start
    evaluation = evaluate(cfg, best, 'val', raw_scores=True, unknown=False, out_dir=work_dir)
    frame = evaluation['predictions']
    recall = {label: float((group.pred_label == label).mean() * 100)
              for label, group in frame.groupby('gt_label')}
    result = dict(seed=seed, data_root=data_root, checkpoint=best, train_seconds=seconds,
                  top1=evaluation['metrics'].get('accuracy/top1'),
                  macro_f1=evaluation['metrics'].get('single-label/f1-score'),
                  per_class_recall=recall, val_images=len(frame))
    atomic_write(osp.join(work_dir, RESULT), json.dumps(result, indent=2))
    return result


def run_kfold(config: str, data_root: str, parent: str, folds: int = 5,
              seeds: Sequence[int] = (0, ), group_file: Optional[str] = None,
              cfg_options: Optional[dict] = None, split_seed: int = 0,
              log: Callable[[str], None] = print) -> dict:
    """Every (seed, fold) run not finished yet, then :func:`summarize`."""
    prepared = prepare_folds(data_root, parent, folds, group_file, split_seed)
    log('Images per class and fold:\n' + prepared['shares'].to_string())
    for seed in seeds:
        for fold, root in enumerate(prepared['roots']):
            work_dir = osp.join(parent, f'seed_{seed}', f'fold_{fold}')
            if osp.isfile(osp.join(work_dir, RESULT)):
                log(f'seed {seed} fold {fold}: finished before, kept')
                continue
            result = run_fold(config, root, work_dir, seed, cfg_options)
            log(f"seed {seed} fold {fold}: top-1 {result['top1']:.2f}%, macro F1 "
                f"{result['macro_f1']:.2f}% ({result['train_seconds']:.0f} s)")
    return summarize(parent, seeds, folds)


def read_results(parent: str, seeds: Sequence[int], folds: int) -> list:
    results = []
    for seed in seeds:
        for fold in range(folds):
            with open(osp.join(parent, f'seed_{seed}', f'fold_{fold}', RESULT)) as file:
                results.append(dict(json.load(file), fold=fold))
    return results


def summarize(parent: str, seeds: Sequence[int], folds: int) -> dict:
    """Mean ± std (over every seed and fold) of top-1, macro F1, training seconds and each
    class's recall, from the runs' ``fold_result.json``; saved as ``kfold_summary.json``."""
    results = read_results(parent, seeds, folds)

    def spread(values):
        values = np.asarray([v for v in values if v is not None], float)
        return dict(mean=float(values.mean()), std=float(values.std(ddof=1))
                    if len(values) > 1 else 0.0, n=int(len(values)))

    recall = pd.DataFrame([result['per_class_recall'] for result in results])
    summary = dict(folds=folds, seeds=list(seeds), runs=len(results),
                   top1=spread(r['top1'] for r in results),
                   macro_f1=spread(r['macro_f1'] for r in results),
                   train_seconds=spread(r['train_seconds'] for r in results),
                   per_class_recall={label: spread(recall[label].dropna())
                                     for label in recall.columns},
                   runs_table=[{key: r[key] for key in ('seed', 'fold', 'top1', 'macro_f1',
                                                         'train_seconds', 'val_images')}
                               for r in results])
    atomic_write(osp.join(parent, SUMMARY), json.dumps(summary, indent=2))
    return summary


def format_summary(summary: dict) -> str:
    """The table a tool prints."""
    lines = [f"{'seed':>5}{'fold':>5}{'top-1 %':>9}{'macro F1 %':>12}{'seconds':>9}"]
    for run in summary['runs_table']:
        lines.append(f"{run['seed']:>5}{run['fold']:>5}{run['top1']:>9.2f}"
                     f"{run['macro_f1']:>12.2f}{run['train_seconds']:>9.0f}")
    lines.append(f"{summary['folds']} folds x {len(summary['seeds'])} seed(s): top-1 "
                 f"{summary['top1']['mean']:.2f} ± {summary['top1']['std']:.2f} %, macro F1 "
                 f"{summary['macro_f1']['mean']:.2f} ± {summary['macro_f1']['std']:.2f} %, "
                 f"{summary['train_seconds']['mean']:.0f} s per run")
    worst = sorted(summary['per_class_recall'].items(), key=lambda item: item[1]['mean'])[:5]
    lines.append('lowest recall: ' + ', '.join(f"{label} {entry['mean']:.1f} ± "
                                                 f"{entry['std']:.1f} %" for label, entry in worst))
    return '\n'.join(lines)
