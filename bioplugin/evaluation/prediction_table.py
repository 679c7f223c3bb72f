"""Predictions as a table: one row per image, written to CSV atomically.

The CSV the reference task expects is ``image_name,pred_label``: the file name without its
extension and the class folder name (with folders ``0``…``99`` the value *is* the folder name,
never an internal index). ``topk`` adds ``top{i}_label`` / ``top{i}_score`` columns, a class
name mapping adds ``pred_name`` / ``top{i}_name`` columns, in the spirit of timm's
``inference.py``.

Class and file names are data: a class called ``NA`` or ``=1+1`` is written and read back as
it is. A spreadsheet would run a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return as a formula, so :func:`write_csv_atomic` writes such text cells (and column
names) behind a leading ``'`` (OWASP's guard against CSV injection); a text that starts with
``'`` itself gets one too, so that :func:`read_prediction_csv` gives back every name
exactly. Numbers are never guarded.
"""
import os.path as osp
import re
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import DatasetError
from ..fileio import atomic_open


def image_names(paths: Sequence[str], full_name: bool = False) -> list:
    """File stems (or file names) of ``paths``; two paths with the same name are an error."""
    names = [osp.basename(p) if full_name else osp.splitext(osp.basename(p))[0] for p in paths]
    seen: Dict[str, str] = {}
    for name, path in zip(names, paths):
        if name in seen:
            raise DatasetError(
                f'Two test images share the name {name!r}: {seen[name]!r} and {path!r}; '
                'rename one so that every row of the prediction CSV is unambiguous.')
        seen[name] = path
    return names


def prediction_frame(names: Sequence[str],
                     scores: np.ndarray,
                     classes: Sequence[str],
                     topk: int = 1,
                     class_names: Optional[Dict[str, str]] = None,
                     include_index: bool = False,
                     errors: Optional[Dict[int, str]] = None) -> pd.DataFrame:
    """One row per image: ``image_name``, ``pred_label``, ``score`` and optional extras.

    ``scores`` is ``(N, C)`` class probabilities in the order of ``classes``; ``topk > 1`` adds
    the labels and scores of the k best classes; ``class_names`` maps a class label to a
    readable name; ``include_index`` adds the internal class index.

    A NaN row (an image that could not be read) keeps its place with empty labels and NaN
    scores; ``status`` (``'ok'`` or ``'unreadable: <reason>'`` from ``errors``) is added when
    there is such a row.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(names), len(classes)):
        raise ValueError(f'scores of shape {scores.shape} do not match {len(names)} images '
                         f'and {len(classes)} classes')
    topk = max(1, min(int(topk), len(classes)))
    failed = np.isnan(scores).any(axis=1)
    order = np.argsort(-np.nan_to_num(scores, nan=0.0), axis=1, kind='stable')[:, :topk]
    labels = np.asarray(classes, dtype=object)[order]
    labels[failed] = ''
    best_scores = np.take_along_axis(scores, order, axis=1)
    frame = pd.DataFrame({'image_name': list(names), 'pred_label': labels[:, 0]})
    if include_index:
        frame['pred_index'] = np.where(failed, -1, order[:, 0])
    if class_names is not None:
        frame['pred_name'] = [class_names.get(label, label) for label in labels[:, 0]]
    frame['score'] = best_scores[:, 0]
    for rank in range(1, topk):
        frame[f'top{rank + 1}_label'] = labels[:, rank]
        if class_names is not None:
            frame[f'top{rank + 1}_name'] = [class_names.get(label, label)
                                            for label in labels[:, rank]]
        frame[f'top{rank + 1}_score'] = best_scores[:, rank]
    if failed.any():
        errors = errors or {}
        frame['status'] = ['unreadable: ' + errors.get(i, 'see the log') if bad else 'ok'
                           for i, bad in enumerate(failed)]
    return frame


def read_class_names(path: str, classes: Sequence[str]) -> Dict[str, str]:
    """Readable class names from a file: ``label,name`` CSV rows, or one name per line in the
    order of ``classes``."""
    if not osp.isfile(path):
        raise DatasetError(f'Class-name file {path!r} does not exist.')
    with open(path, encoding='utf-8') as file:
        lines = [line.rstrip('\n') for line in file if line.strip()]
    if lines and all(',' in line for line in lines):
        pairs = dict(line.split(',', 1) for line in lines)
        pairs.pop('label', None)  # header
        return {label.strip(): name.strip() for label, name in pairs.items()}
    if len(lines) != len(classes):
        raise DatasetError(
            f'{path!r} has {len(lines)} names for {len(classes)} classes; give one name per '
            'class in class order, or `label,name` rows.')
    return dict(zip(classes, (line.strip() for line in lines)))


FORMULA_STARTS = ('=', '+', '-', '@', '\t', '\r')
GUARD = "'"
# the number columns of a prediction table (the others hold names and words)
NUMBER_COLUMNS = re.compile(r'(.+_)?score|pred_index')
BOOLEAN_COLUMNS = ('unknown', )


def guard_formula(value):
    """``value`` with a leading ``'`` when it is text a spreadsheet would run as a formula (or
    text that starts with ``'``); anything else as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS + (GUARD, )):
        return GUARD + value
    return value


def unguard_formula(value):
    """The inverse of :func:`guard_formula`."""
    return value[1:] if isinstance(value, str) and value.startswith(GUARD) else value


def guard_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells and column names are guarded
    (:func:`guard_formula`); number and boolean columns stay as they are."""
    frame = frame.rename(columns=guard_formula)
    for column in range(frame.shape[1]):
        values = frame.iloc[:, column]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            frame.isetitem(column, values.map(guard_formula))
    return frame


def write_csv_atomic(frame: pd.DataFrame, path: str, float_format: str = '%.6f',
                     raw_names: bool = False) -> str:
    """Write ``frame`` to ``path`` through a temporary file and a rename: a crash never leaves
    a half-written CSV. Text that a spreadsheet would run as a formula is guarded (see the
    module's notes) unless ``raw_names``."""
    if not raw_names:
        frame = guard_formulas(frame)
    with atomic_open(path, 'w', encoding='utf-8') as file:
        frame.to_csv(file, index=False, float_format=float_format)
    return path


def read_prediction_csv(path: str, raw_names: bool = False) -> pd.DataFrame:
    """A prediction table written by :func:`write_csv_atomic`, as it was: names verbatim
    (``NA`` stays ``NA``, the formula guard is removed unless the file was written with
    ``raw_names``), scores and indices as numbers (an empty cell: NaN), ``unknown`` as
    booleans."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not raw_names:
        frame = frame.rename(columns=unguard_formula)
    for column in frame.columns:
        values = frame[column]
        if NUMBER_COLUMNS.fullmatch(column):
            frame[column] = pd.to_numeric(values.mask(values == ''))
        elif column in BOOLEAN_COLUMNS:
            frame[column] = values == 'True'
        elif not raw_names:
            frame[column] = values.map(unguard_formula)
    return frame
