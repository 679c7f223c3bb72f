"""Per-image validation predictions for the analysis tools: saved, or computed once."""
import json
import os.path as osp
from typing import Optional, Tuple

import pandas as pd

from ..apis import evaluate
from ..datasets.bio_dataset import sort_class_names
from ..errors import ConfigError, DatasetError
from ..evaluation.prediction_table import read_prediction_csv


def read_predictions(path: str) -> Tuple[pd.DataFrame, list]:
    """A ``predictions_<split>.csv`` written by ``tools/test.py`` and its class list (from the
    ``metrics_<split>.json`` beside it, else the labels that occur). Names come back as they
    were written: ``NA`` is a class, not a missing value, and the formula guard is removed
    (unless the metrics file says the CSV was written without it)."""
    if not osp.isfile(path):
        raise DatasetError(f'Predictions file {path!r} does not exist; write one with '
                           'tools/test.py CONFIG CHECKPOINT.')
    metrics_file = osp.join(osp.dirname(path),
                            osp.basename(path).replace('predictions_', 'metrics_', 1)
                            .replace('.csv', '.json'))
    metrics = {}
    if osp.isfile(metrics_file):
        with open(metrics_file) as file:
            metrics = json.load(file)
    frame = read_prediction_csv(path, raw_names=not metrics.get('formula_guard', True))
    missing = {'pred_label', 'gt_label', 'score'} - set(frame.columns)
    if missing:
        raise DatasetError(f'{path!r} lacks the columns {sorted(missing)}; it must come from '
                           'an evaluation (tools/test.py without --csv).')
    classes = metrics.get('classes') or sort_class_names(set(frame.gt_label) |
                                                         set(frame.pred_label))
    return frame, [str(name) for name in classes]


def predictions_for_analysis(predictions: Optional[str] = None, config: Optional[str] = None,
                             checkpoint: Optional[str] = None, cfg_options=None,
                             data_root: Optional[str] = None, trust_checkpoint: bool = False,
                             **loader_args) -> Tuple[pd.DataFrame, list]:
    """Saved predictions when given, else evaluate ``checkpoint`` on the val split."""
    if predictions:
        return read_predictions(predictions)
    if not (config and checkpoint):
        raise ConfigError('Pass CONFIG and CHECKPOINT, or --predictions FILE.')
    result = evaluate(config, checkpoint, 'val', cfg_options, data_root, trust_checkpoint,
                      **loader_args)
    return result['predictions'], result['classes']
