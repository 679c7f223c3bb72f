"""Calibrate a checkpoint: evaluate it on val (and its training images), fit what its
predictions are post-processed with, and write the files kept beside it.

``tools/analysis/calibrate.py WORK_DIR`` is the command line; ``tools/train.py`` calls
:func:`calibrate_checkpoint` on the best checkpoint when training ends. The files are read
back by :mod:`~bioplugin.evaluation.model_facts`.
"""
import os
import os.path as osp
from typing import Optional

import numpy as np
from mmengine.config import Config

from ..engine.checkpoint_io import resolve_checkpoint
from ..evaluation.model_facts import (read_feature_bank, save_calibration, save_feature_bank,
                                      save_val_set)
from ..evaluation.review import CONFIDENCE, TARGET_PRECISION, choose_thresholds
from ..evaluation.temperature_scaling import calibrate, calibrated_scores
from ..evaluation.unknown_score import (KNOWN_RATE, NEIGHBOURS, UnknownDetector,
                                        fit_unknown_score)
from .config import load_config, work_dir_config
from .evaluate import CheckpointEvaluator


def calibrate_checkpoint(config, checkpoint: str, out_dir: Optional[str] = None,
                         folds: int = 2, target_precision: float = TARGET_PRECISION,
                         trust_checkpoint: bool = False, open_set: bool = True,
                         known_rate: float = KNOWN_RATE, neighbours: int = NEIGHBOURS,
                         precision: Optional[str] = None,
                         confidence: Optional[float] = CONFIDENCE) -> dict:
    """Evaluate ``checkpoint`` (a file or a work dir) on val with its raw logits, fit the
    temperature, store it as ``<checkpoint>.calibration.json`` (read by ``tools/test.py``,
    ``BioClassifier`` and the ONNX export) with the review thresholds chosen on the
    calibrated val scores for ``target_precision`` to hold with ``confidence``
    (:mod:`~bioplugin.evaluation.review`), keep the val logits and labels
    (``<checkpoint>.val_posteriors.npz``, for :mod:`~bioplugin.evaluation.quantification`)
    and draw the reliability diagram. With ``open_set`` it also computes the training images' features once
    (``<checkpoint>.features.npz``) and the unknown threshold that passes ``known_rate`` of
    the val images (:mod:`~bioplugin.evaluation.unknown_score`). ``precision`` overrides the
    config's for these evaluations. Returns the calibration record with ``file`` and
    ``figure`` added."""
    cfg = config if isinstance(config, Config) else load_config(config)
    checkpoint = resolve_checkpoint(checkpoint)
    out_dir = out_dir or osp.join(osp.dirname(osp.abspath(checkpoint)), 'calibration')
    os.makedirs(out_dir, exist_ok=True)
    evaluations = CheckpointEvaluator(cfg, checkpoint, trust_checkpoint=trust_checkpoint,
                                      raw_scores=True, unknown=False, out_dir=out_dir,
                                      precision=precision)
    evaluation = evaluations('val')
    logits, labels = evaluation['logits'], evaluation['gt_labels']
    readable = ~np.isnan(logits).any(1)  # NaN rows: unreadable images
    record = calibrate(logits[readable], labels[readable], len(evaluation['classes']),
                       folds=folds)
    calibrated = calibrated_scores(logits[readable], record['temperature'])
    record['review'] = choose_thresholds(calibrated, labels[readable], evaluation['classes'],
                                         target_precision, confidence=confidence)
    record['warnings'] += record['review']['warnings']
    known = None
    if open_set:
        record['open_set'] = fit_unknown_threshold(evaluations, evaluation, readable,
                                                   known_rate, neighbours)
        record['warnings'] += record['open_set']['warnings']
        known = val_known(record['open_set'], checkpoint, evaluation, readable)
    record['val_posteriors'] = osp.basename(save_val_set(
        checkpoint, logits[readable], labels[readable], known))
    record['file'] = save_calibration(checkpoint, record)
    if record['images']:
        # here, not at the top: bioplugin.analysis imports this package
        from ..analysis.plots import plot_reliability, save_figure
        record['figure'] = save_figure(
            plot_reliability(record['reliability_before'], record['reliability_after'],
                             record['before'], record['after']),
            osp.join(out_dir, 'reliability.png'))
    return record


def fit_unknown_threshold(evaluations: CheckpointEvaluator, val: dict, readable: np.ndarray,
                          known_rate: float, neighbours: int) -> dict:
    """The ``open_set`` record: the training features (the train split through the test
    pipeline, by the Runner that evaluated ``val``; saved beside the checkpoint) and the
    threshold fitted on ``val``."""
    if val['features'] is None:
        return dict(threshold=None, warnings=[
            "the model's head gives no features (use BioClsHead): no unknown flag"])
    train = evaluations('train')
    usable = ~np.isnan(train['logits']).any(1)
    bank = train['features'][usable]
    record = fit_unknown_score(val['logits'][readable], val['features'][readable], bank,
                          k=neighbours, known_rate=known_rate)
    record['feature_bank'] = osp.basename(
        save_feature_bank(evaluations.checkpoint, bank, train['gt_labels'][usable]))
    return record


def val_known(open_set: dict, checkpoint: str, val: dict, readable: np.ndarray):
    """Which readable val images pass as known under the fitted unknown threshold (None
    without one): quantification counts the classes among such images only."""
    if open_set.get('threshold') is None:
        return None
    detector = UnknownDetector(open_set, read_feature_bank(checkpoint))
    scores = detector(val['logits'][readable].astype(np.float32), val['features'][readable])
    return scores <= detector.threshold


def calibrate_work_dir(work_dir: str, config: Optional[str] = None,
                       checkpoint: Optional[str] = None, data_root: Optional[str] = None,
                       **options) -> dict:
    """:func:`calibrate_checkpoint` on the best checkpoint of ``work_dir`` with the config
    saved there (``config`` / ``checkpoint`` to choose others, ``data_root`` for the data)."""
    cfg = load_config(config or work_dir_config(work_dir), data_root=data_root)
    return calibrate_checkpoint(cfg, checkpoint or work_dir, **options)


def review_summary(review: dict) -> str:
    """One sentence on the review thresholds: how they were chosen, the share of val they
    accept and its precision, point estimates beside what holds at the stated confidence."""
    per_class = sum(entry['source'] == 'class' for entry in review['classes'].values())
    confidence = review.get('confidence')
    held = (f" at {confidence:.0%} confidence" if confidence is not None
            else ' on val (point estimates)')
    line = (f"review thresholds for {review['target_precision']:.0%} precision{held}: "
            f"{per_class} per class, {len(review['classes']) - per_class} global "
            f"({review['global_threshold']:.3f}); {review['coverage']:.0%} of val images "
            'auto-accepted')
    if review.get('coverage_low') is not None:
        line += f" (at least {review['coverage_low']:.0%})"
    if review['precision'] is not None:
        line += f", {review['precision']:.1%} of them right"
        if review.get('guaranteed_precision') is not None:
            line += f" (guaranteed {review['guaranteed_precision']:.1%})"
    elif review.get('best_guarantee') is not None:
        line += f"; the best precision val can guarantee is {review['best_guarantee']:.1%}"
    return line


def format_calibration(record: dict) -> str:
    """The before / after table a tool prints."""
    lines = [f"temperature {record['temperature']:.3f} fitted on {record['images']} val images"]
    if record['images']:
        lines.append(f"{'':14}{'ECE':>8}{'NLL':>8}{'Brier':>8}{'mean score':>12}")
        rows = (('model scores', 'before'), ('calibrated*', 'after'))
        for label, key in rows if record['fold_temperatures'] else rows[:1]:
            metrics = record[key]
            lines.append(f"{label:14}{metrics['ece']:8.3f}{metrics['nll']:8.3f}"
                         f"{metrics['brier']:8.3f}{metrics['mean_confidence']:12.3f}")
        if record['fold_temperatures']:
            lines.append('* each val image scored with a temperature fitted on the other '
                         f"fold(s); val top-1 {record['before']['accuracy']:.1%} either way")
    review = record.get('review')
    if review:
        lines.append(review_summary(review))
    open_set = record.get('open_set') or {}
    if open_set.get('threshold') is not None:
        lines.append(
            f"unknown threshold {open_set['threshold']:.3f}: {open_set['val_known_rate']:.0%} "
            f"of val pass as known (energy + {open_set['k']}-NN distance to "
            f"{open_set['bank_images']} training images)")
    lines += [f'warning: {warning}' for warning in record['warnings']]
    return '\n'.join(lines)
