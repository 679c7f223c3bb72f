"""Evaluate a checkpoint on a labeled split, or write the prediction CSV of a split.

``tools/test.py`` is a thin CLI over :func:`evaluate_split` and :func:`predict_split`.
"""
import os.path as osp
import time
from typing import Optional, Tuple

import numpy as np
import pandas as pd
from mmengine.dist import is_main_process

from ..errors import ConfigError
from ..evaluation import (compute_metrics, image_names, prediction_frame, read_class_names,
                          save_metrics_json, write_csv_atomic)
from .config import build_split_dataset
from .inference import BioClassifier, unreadable_reasons


def split_dataset(classifier: BioClassifier, split: str):
    """The images of a split (no pipeline), labeled with the checkpoint's classes.

    A labeled split must have exactly those class folders; an unlabeled one needs no
    training folder next to it.
    """
    return build_split_dataset(classifier.cfg, split, classes=classifier.classes)


def _image_paths(dataset) -> list:
    return [dataset.get_data_info(i)['img_path'] for i in range(len(dataset))]


def evaluate_split(classifier: BioClassifier, split: str = 'val', batch_size: int = 32,
                   num_workers: int = 0, progress: bool = True) -> Tuple[dict, pd.DataFrame]:
    """Metrics of the config's ``val_evaluator`` on a labeled split, and the per-image table
    (``image_name`` = path inside the split, ``pred_label``, ``score``, ``gt_label``,
    ``image_path``). Images that cannot be read are left out of the metrics and marked in the
    table's ``status`` column."""
    dataset = split_dataset(classifier, split)
    if not getattr(dataset, 'labeled', True) or 'gt_label' not in dataset.get_data_info(0):
        raise ConfigError(f'The {split} split has no labels to evaluate against; write its '
                          'predictions with --csv instead.')
    paths = _image_paths(dataset)
    gt_labels = np.asarray(dataset.get_gt_labels())
    scores = classifier.predict_scores(paths, batch_size, num_workers, progress)
    errors = unreadable_reasons(paths, scores)
    readable = np.ones(len(paths), bool)
    readable[list(errors)] = False
    metrics = compute_metrics(scores[readable], gt_labels[readable],
                              classifier.cfg.val_evaluator, classifier.classes)
    relative_paths = [osp.relpath(path, dataset.img_prefix) for path in paths]
    frame = prediction_frame(relative_paths, scores, classifier.classes, errors=errors)
    frame['gt_label'] = np.asarray(classifier.classes, dtype=object)[gt_labels]
    frame['image_path'] = paths
    return metrics, frame


def unreadable_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a prediction table whose image could not be read."""
    return frame[frame['status'] != 'ok'] if 'status' in frame else frame.iloc[:0]


def evaluate_to_files(classifier: BioClassifier, out_dir: str, split: str = 'val',
                      batch_size: int = 32, num_workers: int = 0, progress: bool = True) -> dict:
    """:func:`evaluate_split`, saved as ``metrics_<split>[_tta].json`` (metrics, image count,
    class list, checkpoint) and ``predictions_<split>[_tta].csv`` in ``out_dir``."""
    metrics, frame = evaluate_split(classifier, split, batch_size, num_workers, progress)
    suffix = '_tta' if classifier.tta else ''
    metrics_file = osp.join(out_dir, f'metrics_{split}{suffix}.json')
    predictions_file = osp.join(out_dir, f'predictions_{split}{suffix}.csv')
    if is_main_process():  # one writer in a distributed run
        save_metrics_json(
            metrics_file, metrics, images=len(frame), split=split, tta=classifier.tta,
            unreadable=unreadable_rows(frame).image_path.tolist(),
            classes=list(classifier.classes), config=classifier.cfg.filename,
            checkpoint=classifier.checkpoint_path, time=time.strftime('%Y-%m-%d %H:%M:%S'))
        write_csv_atomic(frame, predictions_file)
    return dict(metrics=metrics, predictions=frame, metrics_file=metrics_file,
                predictions_file=predictions_file)


def predict_split(classifier: BioClassifier, split: str = 'test',
                  csv_path: Optional[str] = None, topk: int = 1,
                  class_names: Optional[str] = None, include_index: bool = False,
                  full_name: bool = False, batch_size: int = 32, num_workers: int = 0,
                  progress: bool = True) -> pd.DataFrame:
    """One prediction row per image of ``split``, written to ``csv_path`` when given.

    ``image_name`` is the file stem (``full_name``: with extension), ``pred_label`` the class
    folder name; rows follow the dataset's natural file order. An unreadable image keeps its
    row, with an empty label and the reason in a ``status`` column.
    """
    dataset = split_dataset(classifier, split)
    paths = _image_paths(dataset)
    names = image_names(paths, full_name=full_name)  # refuses two files with one name
    mapping = read_class_names(class_names, classifier.classes) if class_names else None
    scores = classifier.predict_scores(paths, batch_size, num_workers, progress)
    frame = prediction_frame(names, scores, classifier.classes, topk=topk,
                             class_names=mapping, include_index=include_index,
                             errors=unreadable_reasons(paths, scores))
    if csv_path and is_main_process():  # one writer in a distributed run
        write_csv_atomic(frame, csv_path)
    return frame
