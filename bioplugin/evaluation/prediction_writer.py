"""``PredictionWriter``: the per-image predictions of a test run, and its metrics when labeled.

A metric of MMEngine's evaluator, so ``runner.test()`` — our ``tools/test.py`` and MMPretrain's
alike — writes one row per image of the split, in file order, gathered across processes by
MMEngine. On a labeled split it also computes the wrapped ``labeled_metrics`` (MMPretrain's) on the
readable images and saves them as JSON; on the unlabeled test split it only writes the CSV.
Relative paths are inside the work dir::

    test_evaluator = dict(type='PredictionWriter', out_file='prediction.csv',
                          labeled_metrics=[dict(type='Accuracy', topk=(1, 5)),
                                           dict(type='SingleLabelMetric', average='macro')])
"""
import os.path as osp
import time
from typing import Optional, Sequence, Union

import numpy as np
import pandas as pd
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseTTAModel

from mmpretrain.registry import METRICS

from ..errors import ConfigError
from ..models.builder import bare_model
from .calibration import apply_temperature, read_calibration
from .open_set import OpenSetDetector, add_unknown_columns, unknown_scores
from .review import decisions, review_queue
from .taxonomy import CONFIDENT, add_rank_columns, rank_accuracy, read_taxonomy
from .metrics_report import compute_metrics, save_metrics_json
from .prediction_table import image_names, prediction_frame, read_class_names, write_csv_atomic


@METRICS.register_module()
class PredictionWriter(BaseMetric):
    """Write ``out_file`` (``image_name,pred_label,score`` …, see
    :func:`~bioplugin.evaluation.prediction_table.prediction_frame`) and, for a labeled split,
    ``metrics_file`` with the ``labeled_metrics`` of its readable images.

    On the unlabeled split ``image_name`` is the file stem (``full_name=True``: the file
    name); on a labeled one it is the path inside the split, next to ``gt_label`` and
    ``image_path``. ``topk``, ``class_names`` (a ``label,name`` CSV or one name per line) and
    ``include_index`` add columns. An unreadable image (the dataset's
    ``bad_image_policy='placeholder'``) keeps its row with an empty label and the reason in a
    ``status`` column, and is left out of the metrics.

    ``temperature='auto'`` applies the temperature stored beside the checkpoint by
    ``tools/analysis/calibrate.py`` (``<checkpoint>.calibration.json``; none: the model's own
    scores), a number applies that one, ``None`` none (``tools/test.py --raw-scores``).
    ``review='auto'`` adds the ``decision`` column (``accept`` / ``review``) from the
    thresholds stored with that temperature (:mod:`~bioplugin.evaluation.review`), only
    on calibrated scores; ``review_file`` also writes the rows to review, least certain first.
    ``taxonomy`` (a CSV, see :mod:`~bioplugin.evaluation.taxonomy`) adds ``<rank>_label``,
    ``<rank>_score`` and ``confident_rank`` (``confident_threshold``) columns and, on a
    labeled split, the top-1 accuracy of every rank (``taxonomy/<rank>_top1``).
    ``unknown='auto'`` adds ``unknown`` / ``unknown_score`` columns from the checkpoint's
    open-set threshold (:mod:`~bioplugin.evaluation.open_set`; an unknown image is always
    ``review``), ``unknown_label`` writes that name as its ``pred_label``.
    """

    def __init__(self,
                 out_file: Optional[str] = 'prediction.csv',
                 labeled_metrics: Sequence[dict] = (),
                 metrics_file: Optional[str] = None,
                 split: Optional[str] = None,
                 topk: int = 1,
                 class_names: Optional[str] = None,
                 include_index: bool = False,
                 full_name: bool = False,
                 temperature: Union[str, float, None] = 'auto',
                 review: Union[str, dict, None] = 'auto',
                 review_file: Optional[str] = None,
                 taxonomy: Optional[str] = None,
                 confident_threshold: float = CONFIDENT,
                 unknown: Optional[str] = 'auto',
                 unknown_label: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        self.out_file = out_file
        self.metric_cfgs = ([labeled_metrics] if isinstance(labeled_metrics, dict)
                            else list(labeled_metrics))
        self.metrics_file = metrics_file
        self.split = split
        self.topk = topk
        self.class_names = class_names
        self.include_index = include_index
        self.full_name = full_name
        if temperature not in ('auto', None) and not (
                isinstance(temperature, (int, float)) and temperature > 0):
            raise ConfigError(f"temperature={temperature!r}: use 'auto', None or a positive "
                              'number.')
        self.temperature_option = temperature
        self.temperature: Optional[float] = None if temperature == 'auto' else temperature
        self.review_option = review
        self.review: Optional[dict] = review if isinstance(review, dict) else None
        self.review_file = review_file
        self.taxonomy = taxonomy
        self.confident_threshold = confident_threshold
        if unknown not in ('auto', None):
            raise ConfigError(f"unknown={unknown!r}: use 'auto' or None.")
        self.unknown_option = unknown
        self.unknown_label = unknown_label
        self.open_set: Optional[OpenSetDetector] = None
        self.unknown_threshold: Optional[float] = None
        self.work_dir = '.'
        self.run_info: dict = {}
        self.frame: Optional[pd.DataFrame] = None  # the last table, in the main process
        self.scores: Optional[np.ndarray] = None  # its class probabilities
        self.gt_labels: Optional[np.ndarray] = None  # and labels, on a labeled split
        self.logits: Optional[np.ndarray] = None  # raw logits and head features, when the
        self.features: Optional[np.ndarray] = None  # model gives them (BioClsHead does)

    def attach(self, runner) -> None:
        """Write into the runner's work dir and record what was evaluated."""
        self.work_dir = runner.work_dir
        model = bare_model(runner.model)
        model_file = runner.cfg.get('load_from') or getattr(model, 'onnx_file', None)
        calibration = read_calibration(runner.cfg.get('load_from')) or {}
        if self.unknown_option == 'auto':
            self.open_set = OpenSetDetector.from_checkpoint(runner.cfg.get('load_from'),
                                                            calibration)
            # an ONNX file computes the score in its graph and names the threshold
            self.unknown_threshold = (self.open_set.threshold if self.open_set
                                      else getattr(model, 'unknown_threshold', None))
        if self.temperature_option == 'auto':
            self.temperature = calibration.get('temperature')
            if self.review_option == 'auto':
                # thresholds hold for calibrated scores: the checkpoint's, or the ONNX file's
                self.review = calibration.get('review') or getattr(model, 'review', None)
        self.run_info = dict(config=runner.cfg.filename, checkpoint=model_file,
                             tta=isinstance(runner.model, BaseTTAModel),
                             temperature=self.temperature)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            gt_label = sample.get('gt_label')
            self.results.append(dict(
                index=sample.get('sample_idx'), img_path=sample['img_path'],
                image_name=sample.get('image_name'), load_error=sample.get('load_error'),
                score=sample['pred_score'].float().cpu().numpy(),
                logits=_numpy(sample.get('pred_logits')),
                feature=_numpy(sample.get('pred_feature')),
                unknown_score=_numpy(sample.get('pred_unknown_score')),
                gt_label=None if gt_label is None else int(gt_label[0])))

    def compute_metrics(self, results: list) -> dict:
        classes = list(self.dataset_meta['classes'])
        if all(result['index'] is not None for result in results):
            results = sorted(results, key=lambda result: result['index'])
        failed = np.array([result['load_error'] is not None for result in results], bool)
        scores = np.stack([result['score'] for result in results]) if results else \
            np.zeros((0, len(classes)))
        scores[failed] = np.nan
        scores[~failed] = apply_temperature(scores[~failed], self.temperature)
        errors = {i: result['load_error'] for i, result in enumerate(results) if failed[i]}
        paths = [result['img_path'] for result in results]
        labeled = bool(results) and all(result['gt_label'] is not None for result in results)
        if labeled:
            names = [result['image_name'] or osp.basename(result['img_path'])
                     for result in results]
        else:
            names = image_names(paths, full_name=self.full_name)
        mapping = read_class_names(self.class_names, classes) if self.class_names else None
        frame = prediction_frame(names, scores, classes, topk=self.topk, class_names=mapping,
                                 include_index=self.include_index, errors=errors)
        metrics = {}
        if labeled:
            gt_labels = np.array([result['gt_label'] for result in results])
            frame['gt_label'] = np.asarray(classes, dtype=object)[gt_labels]
            frame['image_path'] = paths
            metrics = compute_metrics(scores[~failed], gt_labels[~failed], self.metric_cfgs,
                                      classes)
        taxonomy = read_taxonomy(self.taxonomy, classes) if self.taxonomy else None
        if taxonomy:
            add_rank_columns(frame, scores, taxonomy, self.confident_threshold)
            if labeled:
                metrics.update({f'taxonomy/{key}': value for key, value in rank_accuracy(
                    scores[~failed], gt_labels[~failed], taxonomy).items()})
        self.logits, self.features = (_stack(results, 'logits'), _stack(results, 'feature'))
        if self.unknown_threshold is not None:
            self.add_unknown(frame, results, failed)
        decision = decisions(frame, self.review)
        if decision is not None:
            frame['decision'] = decision
        self.frame, self.scores = frame, scores
        self.gt_labels = gt_labels if labeled else None
        if self.out_file:
            write_csv_atomic(frame, self.output_path(self.out_file))
        if self.review_file and decision is not None:
            write_csv_atomic(review_queue(frame), self.output_path(self.review_file))
        if labeled and self.metrics_file:
            save_metrics_json(
                self.output_path(self.metrics_file), metrics, images=len(frame),
                split=self.split, unreadable=[paths[i] for i in sorted(errors)],
                classes=classes, **self.run_info, time=time.strftime('%Y-%m-%d %H:%M:%S'))
        return metrics

    def add_unknown(self, frame: pd.DataFrame, results: list, failed: np.ndarray) -> None:
        """The ``unknown`` columns, from the model's logits and features (or the score an
        ONNX graph computed)."""
        scores = unknown_scores(self.open_set, self.logits, self.features,
                                _stack(results, 'unknown_score'))
        if scores is None:
            return
        scores = np.asarray(scores, np.float64)
        scores[failed] = np.nan
        add_unknown_columns(frame, scores, self.unknown_threshold, self.unknown_label)

    def output_path(self, path: str) -> str:
        return path if osp.isabs(path) else osp.join(self.work_dir, path)


def _numpy(value) -> Optional[np.ndarray]:
    return None if value is None else value.float().cpu().numpy()


def _stack(results: list, key: str) -> Optional[np.ndarray]:
    """The ``key`` arrays of every result stacked, or None unless every result has one."""
    if not results or any(result[key] is None for result in results):
        return None
    return np.stack([result[key] for result in results])
