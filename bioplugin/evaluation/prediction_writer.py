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
import json
import os.path as osp
import time
from dataclasses import replace
from typing import Optional, Sequence, Union

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.model import BaseTTAModel

from mmpretrain.registry import METRICS

from ..errors import ConfigError
from ..fileio import atomic_write
from .abundance import read_group_file
from .metrics_report import compute_metrics, save_metrics_json
from .model_facts import ModelFacts
from .post_processor import PostProcessor, sample_outputs, stack_outputs
from .prediction_table import image_names, write_csv_atomic
from .review import review_queue
from .taxonomy import CONFIDENT, rank_accuracy


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
    open-set threshold (:mod:`~bioplugin.evaluation.unknown_score`; an unknown image is always
    ``review``), ``unknown_label`` writes that name as its ``pred_label``. The table itself
    is the :class:`~bioplugin.evaluation.post_processor.PostProcessor`'s, as in the Python API.
    Names that a spreadsheet would run as formulas are written behind a ``'`` unless
    ``raw_names`` (see :mod:`~bioplugin.evaluation.prediction_table`); the metrics file says
    which (``formula_guard``). ``adapt_priors`` gives each image's scores under the class
    mix its sample is estimated to hold (the whole split, or each group of ``group_file``,
    an ``image,group`` CSV) and writes the estimated priors to ``<out_file>.priors.json``.
    """

    default_prefix = ''  # its metrics keep their own names (accuracy/top1, ...)

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
                 raw_names: bool = False,
                 adapt_priors: bool = False,
                 group_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix, collect_dir=collect_dir)
        if temperature not in ('auto', None) and not (
                isinstance(temperature, (int, float)) and temperature > 0):
            raise ConfigError(f"temperature={temperature!r}: use 'auto', None or a positive "
                              'number.')
        if unknown not in ('auto', None):
            raise ConfigError(f"unknown={unknown!r}: use 'auto' or None.")
        self.out_file = out_file
        self.metric_cfgs = ([labeled_metrics] if isinstance(labeled_metrics, dict)
                            else list(labeled_metrics))
        self.metrics_file = metrics_file
        self.split = split
        self.full_name = full_name
        self.temperature_option = temperature
        self.review_option = review
        self.review_file = review_file
        self.raw_names = raw_names
        self.table_options = dict(topk=topk, class_names=class_names,
                                  include_index=include_index, taxonomy=taxonomy,
                                  confident_threshold=confident_threshold,
                                  unknown=unknown == 'auto', unknown_label=unknown_label,
                                  adapt_priors=adapt_priors)
        self.group_file = group_file
        self.groups: Optional[dict] = None  # image path -> group, from group_file
        self.warnings: list = []
        self.post_processor: Optional[PostProcessor] = None
        self.work_dir = '.'
        self.run_info: dict = {}
        self.frame = None  # the last table, in the main process
        self.scores: Optional[np.ndarray] = None  # its class probabilities
        self.gt_labels: Optional[np.ndarray] = None  # and labels, on a labeled split
        self.logits: Optional[np.ndarray] = None  # raw logits and head features, when the
        self.features: Optional[np.ndarray] = None  # model gives them (BioClsHead does)

    # ------------------------------------------------------------------ set-up
    def prepare(self, runner, dataset) -> None:
        """Before any image is read: the post-processor from the facts the runner read once
        (classes, calibration, unknown score; ``runner.model_facts``), the work dir, and a
        check that every image of an unlabeled split has its own name."""
        self.work_dir = runner.work_dir
        facts = getattr(runner, 'model_facts', None) or ModelFacts(
            classes=tuple(dataset.metainfo['classes']))
        self.post_processor = PostProcessor(self.facts_with_options(facts), **self.table_options)
        self.run_info = dict(config=runner.cfg.filename, checkpoint=facts.source,
                             tta=isinstance(runner.model, BaseTTAModel),
                             temperature=self.temperature)
        paths = [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]
        if not getattr(dataset, 'labeled', True):
            image_names(paths, full_name=self.full_name)
        if self.group_file:
            groups, self.warnings = read_group_file(self.group_file, paths)
            self.groups = dict(zip(paths, groups))

    def facts_with_options(self, facts: ModelFacts) -> ModelFacts:
        """``temperature`` / ``review`` other than ``'auto'`` replace the model's own."""
        if self.temperature_option != 'auto':
            facts = replace(facts.without_calibration(), temperature=self.temperature_option)
        if self.review_option != 'auto':
            facts = replace(facts, review=self.review_option
                            if isinstance(self.review_option, dict) else None)
        return facts

    @property
    def temperature(self) -> Optional[float]:
        return self.post_processor.temperature if self.post_processor else None

    @property
    def unknown_threshold(self) -> Optional[float]:
        return self.post_processor.unknown_threshold if self.post_processor else None

    # ------------------------------------------------------------------ evaluation
    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            gt_label = sample.get('gt_label')
            self.results.append(dict(
                index=sample.get('sample_idx'), img_path=sample['img_path'],
                image_name=sample.get('image_name'), load_error=sample.get('load_error'),
                gt_label=None if gt_label is None else int(gt_label[0]),
                **sample_outputs(sample)))

    def compute_metrics(self, results: list) -> dict:
        classes = list(self.dataset_meta['classes'])
        if self.post_processor is None:  # a Runner that does not prepare its metrics
            self.post_processor = PostProcessor(
                self.facts_with_options(ModelFacts(classes=tuple(classes))),
                **self.table_options)
        if all(result['index'] is not None for result in results):
            results = sorted(results, key=lambda result: result['index'])
        errors = {i: result['load_error'] for i, result in enumerate(results)
                  if result['load_error'] is not None}
        outputs = stack_outputs(results, len(classes))
        outputs['logits'][list(errors)] = np.nan  # a placeholder's logits mean nothing
        paths = [result['img_path'] for result in results]
        labeled = bool(results) and all(result['gt_label'] is not None for result in results)
        if labeled:
            names = [result['image_name'] or osp.basename(result['img_path'])
                     for result in results]
        else:
            names = image_names(paths, full_name=self.full_name)
        groups = None if self.groups is None else [self.groups.get(path) for path in paths]
        frame = self.post_processor.table(names, outputs['logits'], outputs['features'],
                                          outputs['unknown_scores'], errors, groups)
        scores = self.post_processor.scores(outputs['logits'])
        metrics = {}
        if labeled:
            gt_labels = np.array([result['gt_label'] for result in results])
            frame['gt_label'] = np.asarray(classes, dtype=object)[gt_labels]
            frame['image_path'] = paths
            readable = ~np.isnan(scores).any(1)
            metrics = compute_metrics(scores[readable], gt_labels[readable], self.metric_cfgs,
                                      classes)
            taxonomy = self.post_processor.taxonomy
            if taxonomy is not None:
                metrics.update({f'taxonomy/{key}': value for key, value in rank_accuracy(
                    scores[readable], gt_labels[readable], taxonomy).items()})
        self.frame, self.scores = frame, scores
        self.logits, self.features = outputs['logits'], outputs['features']
        self.gt_labels = gt_labels if labeled else None
        if self.out_file:
            write_csv_atomic(frame, self.output_path(self.out_file), raw_names=self.raw_names)
        if 'priors' in frame.attrs and self.out_file:
            atomic_write(self.priors_file(), json.dumps(frame.attrs['priors'], indent=2))
        if self.review_file and 'decision' in frame:
            write_csv_atomic(review_queue(frame), self.output_path(self.review_file),
                             raw_names=self.raw_names)
        if labeled and self.metrics_file:
            save_metrics_json(
                self.output_path(self.metrics_file), metrics, images=len(frame),
                split=self.split, unreadable=[paths[i] for i in sorted(errors)],
                classes=classes, formula_guard=not self.raw_names, **self.run_info,
                time=time.strftime('%Y-%m-%d %H:%M:%S'))
        return metrics

    def priors_file(self) -> str:
        """Where the priors estimated for ``adapt_priors`` go: beside the CSV."""
        return osp.splitext(self.output_path(self.out_file))[0] + '.priors.json'

    def output_path(self, path: str) -> str:
        return path if osp.isabs(path) else osp.join(self.work_dir, path)
