"""Plots and reports: pure functions from predictions / logs / configs to figures and files."""
from .confusion import (confused_pairs, confusion_frame, confusion_matrix, normalize_rows,
                        per_class_table)
from .curves import load_training_curves
from .gradcam import explain_predictions, gradcam_overlays, most_confident_mistakes
from .model_stats import format_model_stats, model_stats
from .plots import (plot_confused_pairs, plot_confusion_matrix, plot_image_grid,
                    plot_per_class, plot_training_curves, save_figure)
from .report import confusion_outputs, write_report

__all__ = [
    'confused_pairs', 'confusion_frame', 'confusion_matrix', 'confusion_outputs',
    'explain_predictions', 'format_model_stats', 'gradcam_overlays', 'load_training_curves',
    'model_stats', 'most_confident_mistakes', 'normalize_rows', 'per_class_table',
    'plot_confused_pairs', 'plot_confusion_matrix', 'plot_image_grid', 'plot_per_class',
    'plot_training_curves', 'save_figure', 'write_report'
]
