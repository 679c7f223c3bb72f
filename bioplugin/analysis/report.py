"""A one-page HTML report of a training run: metrics, curves, confusions, Grad-CAM, model size,
score calibration, the review queue's risk and coverage, the unknown flag, an error gallery,
the val misclassification rates that abundance estimates are adjusted with (and, given a
sample, its abundance table) and, with a taxonomy, accuracy and confusions at higher ranks.

    python tools/analysis/report.py work_dirs/demo_plankton     # → work_dirs/demo_plankton/report/
"""
import glob
import html
import json
import logging
import os
import os.path as osp
import time
from typing import Optional

import numpy as np
from mmengine.logging import print_log

from ..apis import BioClassifier, evaluate, load_config, work_dir_config
from ..apis.calibrate import review_summary
from ..errors import BioPluginError, ConfigError, DatasetError
from ..evaluation import DISPLAY_NAMES, write_csv_atomic
from ..evaluation.abundance import val_reference
from ..evaluation.quantification import DEFAULT_METHOD, class_rates
from ..evaluation.taxonomy import read_taxonomy
from ..fileio import atomic_write
from .confusion import confused_pairs, confusion_frame, confusion_matrix, per_class_table
from .curves import load_training_curves
from .error_gallery import error_gallery, risk_coverage
from .gradcam import explain_predictions
from .model_stats import model_stats
from .plots import (MAX_NAMED_CLASSES, plot_abundance, plot_confused_pairs,
                    plot_confusion_matrix, plot_per_class, plot_reliability, plot_risk_coverage,
                    plot_training_curves, save_figure)


def crop_size(cfg) -> int:
    """The side of the images the model sees at test time (from the test pipeline)."""
    for step in cfg.test_dataloader.dataset.pipeline:
        if step.get('type') == 'CenterCrop':
            size = step['crop_size']
            return size if isinstance(size, int) else size[0]
    return 224


def left_out(total: int, which: str, csv_name: str) -> str:
    """What a figure that names at most ``MAX_NAMED_CLASSES`` of ``total`` classes leaves out
    (``which``: how it chose them), or ``''`` when it names every one."""
    if total <= MAX_NAMED_CLASSES:
        return ''
    return f'showing the {MAX_NAMED_CLASSES} {which} of {total:,} classes; all in {csv_name}'


def confusion_outputs(predictions, classes, out_dir: str, top_pairs: int = 10,
                      normalize: bool = True, raw_names: bool = False) -> dict:
    """Confusion matrix (PNG, row-normalised unless ``normalize=False``, and CSV of counts),
    per-class table and chart, and the most confused pairs (table and chart) in ``out_dir``;
    ``notes`` says what a figure leaves out (beyond ``MAX_NAMED_CLASSES`` classes). CSV names
    carry the formula guard unless ``raw_names``."""
    matrix = confusion_matrix(predictions.gt_label.astype(str), predictions.pred_label.astype(str),
                              classes)
    per_class = per_class_table(matrix, classes)
    pairs = confused_pairs(matrix, classes, top_pairs)

    def csv(frame, name):
        return write_csv_atomic(frame, osp.join(out_dir, name), raw_names=raw_names)

    files = dict(
        confusion_png=save_figure(plot_confusion_matrix(matrix, classes, normalize),
                                  osp.join(out_dir, 'confusion_matrix.png')),
        confusion_csv=csv(confusion_frame(matrix, classes), 'confusion_matrix.csv'),
        per_class_png=save_figure(plot_per_class(per_class), osp.join(out_dir, 'per_class.png')),
        per_class_csv=csv(per_class, 'per_class.csv'),
        pairs_png=save_figure(plot_confused_pairs(pairs), osp.join(out_dir, 'confused_pairs.png')),
        pairs_csv=csv(pairs, 'confused_pairs.csv'),
    )
    notes = dict(confusion_png=left_out(len(classes), 'most confused', 'confusion_matrix.csv'),
                 per_class_png=left_out(len(classes), 'worst', 'per_class.csv'))
    return dict(files=files, per_class=per_class, pairs=pairs,
                notes={key: note for key, note in notes.items() if note})


def rank_outputs(predictions, evaluation: dict, taxonomy: str, rank: Optional[str],
                 out_dir: str, raw_names: bool = False) -> dict:
    """Per-rank top-1 (from the metrics) and the confusion matrix at ``rank`` (PNG, CSV), with
    ``notes`` as :func:`confusion_outputs` gives them."""
    tree = read_taxonomy(taxonomy, evaluation['classes'])
    rank = rank or tree.ranks[0]
    if rank not in tree.ranks:
        raise ConfigError(f'--rank {rank!r} is not a rank of {taxonomy!r} (its ranks: '
                          f'{", ".join(tree.ranks)}).')
    readable = predictions[predictions[f'{rank}_label'] != '']
    index = {name: i for i, name in enumerate(evaluation['classes'])}
    truth = tree.labels([index[str(label)] for label in readable.gt_label], rank)
    groups = sorted(set(tree.groups[rank]))
    matrix = confusion_matrix(truth, readable[f'{rank}_label'].astype(str), groups)
    accuracy = [(name, evaluation['metrics'].get(f'taxonomy/{name}_top1'))
                for name in [tree.class_rank] + tree.ranks]
    accuracy[0] = (tree.class_rank, evaluation['metrics'].get('accuracy/top1'))
    csv_name = f'confusion_matrix_{rank}.csv'
    note = left_out(len(groups), 'most confused', csv_name)
    files = dict(
        rank_confusion_png=save_figure(plot_confusion_matrix(matrix, groups),
                                       osp.join(out_dir, f'confusion_matrix_{rank}.png')),
        rank_confusion_csv=write_csv_atomic(confusion_frame(matrix, groups),
                                            osp.join(out_dir, csv_name), raw_names=raw_names))
    return dict(rank=rank, accuracy=accuracy, files=files,
                notes=dict(rank_confusion_png=note) if note else {})


def risk_coverage_outputs(predictions, calibration: Optional[dict], out_dir: str) -> dict:
    """The risk–coverage curve of the val scores (PNG, CSV) with the review thresholds'
    point."""
    readable = predictions[predictions.score.notna()]
    if readable.empty:
        return {}
    curve = risk_coverage(readable.score.to_numpy(),
                          (readable.pred_label.astype(str) == readable.gt_label.astype(str))
                          .to_numpy())
    review = (calibration or {}).get('review') or {}
    point = ((review['coverage'], 1 - review['precision'])
             if review.get('precision') is not None else None)
    return dict(
        risk_coverage_png=save_figure(
            plot_risk_coverage(curve, point, review.get('target_precision')),
            osp.join(out_dir, 'risk_coverage.png')),
        risk_coverage_csv=write_csv_atomic(curve, osp.join(out_dir, 'risk_coverage.csv')))


def quantification_outputs(classifier, out_dir: str, images: Optional[str] = None,
                           raw_names: bool = False) -> dict:
    """The val misclassification rates the default abundance method (``pacc``) adjusts
    with, as a figure (rows: true class, the mean calibrated score of each class; the
    report's cut at ``MAX_NAMED_CLASSES``) and CSV and, with a folder of sample ``images``,
    its abundance table (CSV, figure). ``files``, ``notes``, ``abundance`` (the table) and
    ``message`` (why a part is missing)."""
    try:
        val = val_reference(classifier.facts.val_set(), classifier.post_processor().scores)
    except BioPluginError as error:
        return dict(files={}, notes={}, abundance=None, message=str(error))
    classes = list(classifier.classes)
    rates = class_rates(np.ones((1, len(val['labels']))), val['posteriors'], val['labels'],
                        len(classes))[0].T  # rows: true class
    files = dict(
        rates_png=save_figure(plot_confusion_matrix(
            np.nan_to_num(rates), classes, title='Val misclassification rates'),
            osp.join(out_dir, 'misclassification_rates.png')),
        rates_csv=write_csv_atomic(confusion_frame(rates, classes),
                                   osp.join(out_dir, 'misclassification_rates.csv'),
                                   raw_names=raw_names))
    note = left_out(len(classes), 'most confused', 'misclassification_rates.csv')
    table = None
    if images:
        table = classifier.abundance(images)
        files['abundance_png'] = save_figure(plot_abundance(table),
                                             osp.join(out_dir, 'abundance.png'))
        files['abundance_csv'] = write_csv_atomic(table, osp.join(out_dir, 'abundance.csv'),
                                                  raw_names=raw_names)
    return dict(files=files, notes=dict(rates_png=note) if note else {}, abundance=table,
                message='', images=len(val['labels']))


def write_report(work_dir: str, config: Optional[str] = None, checkpoint: Optional[str] = None,
                 out_dir: Optional[str] = None, device: Optional[str] = None,
                 gradcam_images: int = 8, top_pairs: int = 10, batch_size: int = 32,
                 num_workers: int = 0, trust_checkpoint: bool = False,
                 gallery_images: int = 16, taxonomy: Optional[str] = None,
                 rank: Optional[str] = None, data_root: Optional[str] = None,
                 raw_names: bool = False, abundance_images: Optional[str] = None) -> str:
    """Evaluate the best checkpoint of ``work_dir`` on val and write ``report.html`` with
    every figure and table next to it (default ``<work_dir>/report/``). Returns its path.
    ``trust_checkpoint`` allows a checkpoint that holds pickled objects besides weights.
    ``taxonomy`` (a CSV, see ``tools/test.py --taxonomy``) adds the top-1 accuracy of every
    rank and the confusion matrix at ``rank`` (default: the rank above the classes).
    ``raw_names`` writes the CSVs without the formula guard on names. ``abundance_images``
    (a folder) adds that sample's abundance table and figure."""
    if not osp.isdir(work_dir):
        raise DatasetError(f'Work dir {work_dir!r} does not exist.')
    out_dir = out_dir or osp.join(work_dir, 'report')
    os.makedirs(out_dir, exist_ok=True)
    cfg = load_config(config or work_dir_config(work_dir), data_root=data_root)
    evaluation = evaluate(cfg, checkpoint or work_dir, 'val', trust_checkpoint=trust_checkpoint,
                          batch_size=batch_size, num_workers=num_workers, out_dir=out_dir,
                          taxonomy=taxonomy, raw_names=raw_names)
    predictions = evaluation['predictions']
    confusion = confusion_outputs(predictions, evaluation['classes'], out_dir, top_pairs,
                                  raw_names=raw_names)
    files, notes = dict(confusion['files']), dict(confusion['notes'])
    ranks = (rank_outputs(predictions, evaluation, taxonomy, rank, out_dir, raw_names)
             if taxonomy else None)
    if ranks:
        files.update(ranks['files'])
        notes.update(ranks['notes'])
    try:
        curves = load_training_curves(work_dir)
        files['curves_png'] = save_figure(plot_training_curves(curves),
                                          osp.join(out_dir, 'training_curves.png'))
        files['curves_csv'] = write_csv_atomic(curves.reset_index(),
                                               osp.join(out_dir, 'training_curves.csv'))
    except DatasetError:
        curves = None  # evaluated from a checkpoint without its training logs
    stats = model_stats(cfg, input_size=crop_size(cfg))
    atomic_write(osp.join(out_dir, 'model_stats.json'), json.dumps(stats, indent=2))
    # Grad-CAM needs gradients: the Python API's model, not the test loop's
    classifier = BioClassifier(cfg, evaluation['checkpoint'], device=device)
    try:
        files['gradcam_png'] = save_figure(
            explain_predictions(classifier, predictions, gradcam_images),
            osp.join(out_dir, 'gradcam.png'))
    except (BioPluginError, RuntimeError, ValueError) as error:
        # a model Grad-CAM cannot explain loses this figure, not the report
        notes['gradcam_png'] = f'not drawn: {error}'
        print_log(f'Report: the Grad-CAM figure is not drawn ({error}); every other section '
                  'is.', logger='current', level=logging.WARNING)
    gallery = error_gallery(predictions, classifier.test_pipeline_cfg, gallery_images)
    if gallery is not None:
        files['errors_png'] = save_figure(gallery, osp.join(out_dir, 'error_gallery.png'))
    calibration = evaluation['facts'].calibration
    if calibration and calibration.get('images'):
        files['reliability_png'] = save_figure(
            plot_reliability(calibration['reliability_before'],
                             calibration['reliability_after'], calibration['before'],
                             calibration['after']), osp.join(out_dir, 'reliability.png'))
    files.update(risk_coverage_outputs(predictions, calibration, out_dir))
    quantification = quantification_outputs(classifier, out_dir, abundance_images, raw_names)
    files.update(quantification['files'])
    notes.update(quantification['notes'])
    page = _html(work_dir, classifier, evaluation, confusion, curves, stats, files, out_dir,
                 calibration, ranks, notes, quantification)
    return atomic_write(osp.join(out_dir, 'report.html'), page)


def _table(rows, header) -> str:
    head = ''.join(f'<th>{html.escape(str(cell))}</th>' for cell in header)
    body = ''.join('<tr>' + ''.join(f'<td>{html.escape(str(cell))}</td>' for cell in row)
                   + '</tr>' for row in rows)
    return f'<table><tr>{head}</tr>{body}</table>'


def _calibration_html(calibration: Optional[dict], figure) -> str:
    """The report's section on score calibration and the review queue."""
    if not calibration:
        return ('<p>No calibration for this checkpoint: run '
                '<code>tools/analysis/calibrate.py</code>.</p>')
    rows = [(name, f"{calibration[key]['ece']:.3f}", f"{calibration[key]['nll']:.3f}",
             f"{calibration[key]['brier']:.3f}", f"{calibration[key]['mean_confidence']:.3f}")
            for name, key in (('model scores', 'before'), ('calibrated (cross-fitted)', 'after'))
            if calibration.get(key)]
    review = calibration.get('review') or {}
    lines = [f"<p>Temperature {calibration['temperature']:.3f}, fitted on "
             f"{calibration['images']} val images.</p>",
             _table(rows, ('scores', 'ECE', 'NLL', 'Brier', 'mean top-1 score')) if rows else '',
             figure('reliability_png', 'Accuracy against confidence per bin; below the '
                    'diagonal is overconfidence')]
    if review:
        summary = review_summary(review)
        lines.append(f'<p>{html.escape(summary[0].upper() + summary[1:])}; the rest go to the '
                     'review queue. The guaranteed figures are one-sided Clopper–Pearson lower '
                     'bounds on the accepted val images.</p>')
    lines.append(figure('risk_coverage_png', 'Share of accepted predictions that are wrong, '
                        'accepting the highest scores first; the dot is the review '
                        'thresholds, the dashed line the target'))
    lines += [f'<p>Warning: {html.escape(warning)}</p>' for warning in calibration['warnings']]
    return '\n'.join(lines)


def _open_set_html(calibration: Optional[dict], predictions) -> str:
    """The report's section on the unknown ("not one of my classes") flag."""
    record = (calibration or {}).get('open_set') or {}
    if record.get('threshold') is None:
        reason = (html.escape(record['warnings'][0]) if record.get('warnings')
                  else 'run <code>tools/analysis/calibrate.py</code>')
        return f'<p>No unknown flag for this checkpoint: {reason}.</p>'
    flagged = int(predictions['unknown'].sum()) if 'unknown' in predictions else 0
    return (f"<p>Unknown score: the larger of the standardised energy of the logits and the "
            f"distance to the {record['k']}-th nearest of {record['bank_images']} training "
            f"images in the head's feature space. Threshold {record['threshold']:.3f}, chosen "
            f"so that {record['val_known_rate']:.0%} of val images pass as known; {flagged} of "
            f"{len(predictions)} val images are flagged. Measure it on images of classes "
            'the model never saw with <code>tools/analysis/open_set.py</code>.</p>')


def _taxonomy_html(ranks: Optional[dict], figure) -> str:
    if not ranks:
        return ('<p>No taxonomy given (<code>tools/analysis/report.py --taxonomy '
                'taxonomy.csv</code>).</p>')
    rows = [(name, '' if value is None else f'{value:.2f}') for name, value in ranks['accuracy']]
    return '\n'.join([_table(rows, ('rank', 'top-1 (%)')), figure(
        'rank_confusion_png', f"Confusion matrix at rank {ranks['rank']}: rows true, columns "
        'predicted (probabilities summed up the tree), row-normalised')])


def _abundance_html(quantification: Optional[dict], figure) -> str:
    """The report's section on counting: the val misclassification rates and, given a
    sample, its abundance table."""
    if not quantification or quantification['message']:
        reason = html.escape(quantification['message']) if quantification else ''
        return f'<p>No val posteriors for abundance estimates: {reason}</p>'
    lines = [figure('rates_png', f"Val misclassification rates that {DEFAULT_METHOD} "
                    'adjusts abundances with: rows true class, the mean calibrated score each '
                    f"class gets ({quantification['images']} known val images)")]
    table = quantification['abundance']
    if table is None:
        lines.append('<p>No sample given (<code>tools/analysis/report.py WORK_DIR '
                     '--abundance-images DIR</code>).</p>')
        return '\n'.join(lines)
    rows = [(row['class'], row['count'],
             '' if row['proportion'] != row['proportion'] else
             f"{row['proportion']:.1%} [{row['ci_low']:.1%}, {row['ci_high']:.1%}]")
            for _, row in table.iterrows()]
    lines += [_table(rows, ('class', 'count', 'proportion [95 % interval]')),
              figure('abundance_png', 'Class proportions of the sample with 95 % intervals')]
    lines += [f'<p>Warning: {html.escape(warning)}</p>' for warning in table.attrs['warnings']]
    return '\n'.join(lines)


def _html(work_dir, classifier, evaluation, confusion, curves, stats, files, out_dir,
          calibration=None, ranks=None, notes=None, quantification=None) -> str:
    def link(key):
        return html.escape(osp.relpath(files[key], out_dir))

    def figure(key, caption):
        """The figure ``key`` with its caption and what it leaves out (``notes``)."""
        if (notes or {}).get(key):
            caption = f'{caption} ({notes[key]})'
        if key not in files:  # a figure that could not be drawn says why
            return f'<p><em>{html.escape(caption)}</em></p>' if (notes or {}).get(key) else ''
        return (f'<figure><img src="{link(key)}" alt="{html.escape(caption)}">'
                f'<figcaption>{html.escape(caption)}</figcaption></figure>')

    metrics = evaluation['metrics']
    metric_rows = [(DISPLAY_NAMES.get(k, k), f'{v:.2f}') for k, v in metrics.items()]
    metric_rows.append(('images', len(evaluation['predictions'])))
    budget = 'pass' if stats['within_budget'] else 'FAIL'
    stat_rows = [('parameters', f"{stats['params'] / 1e6:.2f} M"),
                 ('trainable parameters', f"{stats['trainable_params'] / 1e6:.2f} M"),
                 (f"FLOPs at {stats['input_size']}×{stats['input_size']}",
                  f"{stats['flops'] / 1e9:.2f} G"),
                 (f"budget < {stats['budget'] / 1e6:g} M", budget)]
    worst = confusion['per_class'].head(10)
    worst_rows = [(r['class'], f"{r['accuracy']:.2f}", f"{r['precision']:.2f}", f"{r['f1']:.2f}",
                   r['support']) for _, r in worst.iterrows()]
    pair_rows = [(r['true'], r['predicted'], r['count'], f"{r['rate']:.0%}")
                 for _, r in confusion['pairs'].iterrows()]
    epochs = f', {len(curves)} epochs' if curves is not None else ''
    downloads = ' · '.join(
        f'<a href="{link(key)}">{html.escape(osp.basename(files[key]))}</a>'
        for key in sorted(files) if key.endswith('_csv'))
    return f'''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>bioplugin report — {html.escape(osp.basename(osp.normpath(work_dir)))}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }}
th {{ background: #f3f3f3; }} img {{ max-width: 100%; }} figure {{ margin: 1em 0 2em; }}
figcaption {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>Report: {html.escape(work_dir)}</h1>
<p>Checkpoint <code>{html.escape(classifier.checkpoint_path)}</code>, config
<code>{html.escape(str(classifier.cfg.filename))}</code>, {len(classifier.classes)} classes{epochs};
written {time.strftime('%Y-%m-%d %H:%M')}.</p>
<h2>Validation metrics</h2>
{_table(metric_rows, ('metric', 'value'))}
<h2>Score calibration and the review queue</h2>
{_calibration_html(calibration, figure)}
<h2>Not one of my classes</h2>
{_open_set_html(calibration, evaluation['predictions'])}
<h2>How many of each?</h2>
{_abundance_html(quantification, figure)}
<h2>Higher ranks</h2>
{_taxonomy_html(ranks, figure)}
<h2>Model</h2>
{_table(stat_rows, ('', ''))}
<h2>Training curves</h2>
{figure('curves_png', 'Loss, validation accuracy and learning rate per epoch') or
 '<p>No training logs in this work dir.</p>'}
<h2>Confusion matrix</h2>
{figure('confusion_png', 'Rows: true class; columns: predicted class; row-normalised')}
<h2>Per-class accuracy</h2>
{figure('per_class_png', 'Accuracy (recall) per class, worst first; n = validation images')}
<h3>Ten worst classes</h3>
{_table(worst_rows, ('class', 'accuracy', 'precision', 'F1', 'support'))}
<h2>Most confused pairs</h2>
{figure('pairs_png', 'Most frequent confusions, true → predicted')}
{_table(pair_rows, ('true', 'predicted', 'images', 'rate')) if pair_rows else
 '<p>No confusions.</p>'}
<h2>Error gallery</h2>
{figure('errors_png', 'Misclassified val images as the model saw them, most confident '
        'first: true class, prediction and its (calibrated) score') or
 '<p>No misclassified val images.</p>'}
<h2>Grad-CAM</h2>
{figure('gradcam_png', 'Where the model looked, for its most confident mistakes')}
<h2>Data</h2>
<p>{downloads} · <a href="{html.escape(osp.relpath(evaluation['predictions_file'], out_dir))}">
per-image predictions</a> · <a href="{html.escape(osp.relpath(evaluation['metrics_file'], out_dir))}">
metrics JSON</a> · <a href="model_stats.json">model stats JSON</a></p>
</body></html>
'''
