from .metrics_report import (DISPLAY_NAMES, compute_metrics, fit_topk, format_metrics,
                             save_metrics_json)
from .prediction_writer import PredictionWriter
from .prediction_table import (image_names, prediction_frame, read_class_names,
                               write_csv_atomic)

__all__ = [
    'DISPLAY_NAMES', 'PredictionWriter', 'compute_metrics', 'fit_topk', 'format_metrics', 'image_names',
    'prediction_frame', 'read_class_names', 'save_metrics_json', 'write_csv_atomic'
]
