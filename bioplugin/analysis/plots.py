"""Figures for a report: pure functions, data in, matplotlib Figure out (``save_figure`` writes).

Figures are :class:`~matplotlib.figure.Figure` objects made directly, without pyplot: no global
backend switch and no figure registry to close.
"""
import os.path as osp
from typing import Optional, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..fileio import atomic_open
from .confusion import most_confused_classes, normalize_rows

# Class and file names are data: every text that may hold one is drawn as typed, never read as
# math (``$…$``) or handed to TeX.
VERBATIM = dict(parse_math=False, usetex=False)

# The most classes one figure names. A name needs about 0.2 inch of height at a readable 7-8
# pt, so 50 names make a figure of 10-12 inches, about one screen of the report at 110 dpi,
# with confusion-matrix cells of about 20 pixels. More names overlap or shrink below reading
# size (1,000 become a black bar); the CSV beside each figure keeps every class.
MAX_NAMED_CLASSES = 50


def save_figure(figure: Figure, path: str, dpi: int = 110) -> str:
    """Write ``figure`` to ``path`` atomically, in the format its extension names (PNG when it
    has none); returns ``path``."""
    image_format = osp.splitext(path)[1][1:].lower() or 'png'
    with atomic_open(path, 'wb') as file:
        figure.savefig(file, format=image_format, dpi=dpi, bbox_inches='tight')
    return path


def plot_confusion_matrix(matrix: np.ndarray, classes: Sequence[str], normalize: bool = True,
                          title: str = 'Confusion matrix',
                          max_classes: Optional[int] = MAX_NAMED_CLASSES):
    """Rows: true class, columns: predicted class; row-normalised unless ``normalize=False``.

    Beyond ``max_classes`` classes (None: no limit) it shows the most confused ones
    (:func:`~bioplugin.analysis.confusion.most_confused_classes`), each row still the shares of
    the whole true class, and the title says how many of how many. The figure grows with the
    class count (about 0.16 inch per class beyond 10); cell values are printed up to 30
    classes.
    """
    total = len(classes)
    shown = most_confused_classes(matrix, total if max_classes is None else max_classes)
    values = (normalize_rows(matrix) if normalize else matrix)[np.ix_(shown, shown)]
    counts = matrix[np.ix_(shown, shown)]
    names = [classes[i] for i in shown]
    count = len(names)
    side = float(np.clip(3 + 0.16 * count, 5, 24))
    figure = Figure(figsize=(side + 1.5, side))
    axis = figure.subplots()
    image = axis.imshow(values, cmap='Blues', vmin=0, vmax=1 if normalize else None,
                        interpolation='nearest')
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04,
                    label='share of the true class' if normalize else 'images')
    ticks = np.arange(count)
    font = float(np.clip(360 / max(count, 1), 4, 10))
    axis.set_xticks(ticks, names, rotation=90, fontsize=font, **VERBATIM)
    axis.set_yticks(ticks, names, fontsize=font, **VERBATIM)
    axis.set_xlabel('predicted class')
    axis.set_ylabel('true class')
    scope = f': the {count} most confused of {total:,} classes' if count < total else ''
    axis.set_title(title + scope + (' (row-normalised)' if normalize else ' (counts)'),
                   **VERBATIM)
    if count <= 30:
        threshold = values.max() / 2 if values.size else 0
        for i in range(count):
            for j in range(count):
                if counts[i, j]:
                    text = f'{values[i, j]:.2f}' if normalize else f'{int(values[i, j])}'
                    axis.text(j, i, text, ha='center', va='center', fontsize=font * 0.8,
                              color='white' if values[i, j] > threshold else 'black')
    return figure


def plot_per_class(table: pd.DataFrame, metric: str = 'accuracy',
                   max_classes: Optional[int] = MAX_NAMED_CLASSES):
    """Horizontal bars per class, sorted worst first, with the support in the label; beyond
    ``max_classes`` classes (None: no limit) the worst ones, the title saying how many of how
    many and the dashed line the mean of all classes."""
    table = table.sort_values(metric, kind='stable')
    total, mean = len(table), table[metric].mean()
    if max_classes is not None:
        table = table.head(max_classes)
    count = len(table)
    figure = Figure(figsize=(8, float(np.clip(1 + 0.22 * count, 3, 30))))
    axis = figure.subplots()
    colours = matplotlib.colormaps['RdYlGn'](table[metric].to_numpy())
    labels = [f'{name} (n={support})' for name, support in zip(table['class'], table['support'])]
    axis.barh(np.arange(count), table[metric], color=colours)
    axis.set_yticks(np.arange(count), labels, fontsize=float(np.clip(400 / max(count, 1), 5, 10)),
                    **VERBATIM)
    axis.set_xlim(0, 1)
    axis.set_xlabel(f'per-class {metric}')
    scope = f': the {count} worst of {total:,} classes' if count < total else ''
    axis.set_title(f'Per-class {metric}{scope} (worst at the top)', **VERBATIM)
    axis.invert_yaxis()
    axis.axvline(mean, color='grey', linestyle='--', linewidth=1,
                 label=f'mean{" of all classes" if scope else ""} {mean:.2f}')
    axis.legend(loc='lower right', fontsize=8)
    return figure


def plot_confused_pairs(pairs: pd.DataFrame):
    """Bars of the most frequent confusions, ``true → predicted`` with count and rate."""
    figure = Figure(figsize=(8, float(np.clip(1 + 0.35 * len(pairs), 2.5, 12))))
    axis = figure.subplots()
    if len(pairs) == 0:
        axis.text(0.5, 0.5, 'no confusions', ha='center', va='center')
        axis.set_axis_off()
        return figure
    labels = [f'{t} → {p}' for t, p in zip(pairs['true'], pairs['predicted'])]
    axis.barh(np.arange(len(pairs)), pairs['count'], color='tab:red')
    axis.set_yticks(np.arange(len(pairs)), labels, fontsize=9, **VERBATIM)
    axis.invert_yaxis()
    for y, (count, rate) in enumerate(zip(pairs['count'], pairs['rate'])):
        axis.text(count, y, f' {int(count)} ({rate:.0%})', va='center', fontsize=8)
    axis.set_xlabel('images')
    axis.set_title('Most confused pairs (true → predicted)')
    return figure


def plot_training_curves(curves: pd.DataFrame):
    """Loss, validation accuracy and learning rate per epoch, one figure with three panels."""
    figure = Figure(figsize=(15, 4))
    axes = figure.subplots(1, 3)
    epochs = curves.index
    loss_axis, accuracy_axis, lr_axis = axes
    for column in [c for c in curves.columns if c.endswith('loss')]:
        loss_axis.plot(epochs, curves[column], marker='.', label=column.replace('_', ' '))
    loss_axis.set_title('loss')
    for column in [c for c in curves.columns if c.startswith('val_accuracy')]:
        accuracy_axis.plot(epochs, curves[column], marker='.',
                           label=column.replace('val_accuracy/', 'val ').replace('top', 'top-'))
    accuracy_axis.set_title('validation accuracy (%)')
    if 'lr' in curves:
        lr_axis.plot(epochs, curves['lr'], marker='.', color='tab:purple', label='lr')
        if (curves['lr'].dropna() > 0).all():
            lr_axis.set_yscale('log')
    lr_axis.set_title('learning rate')
    for axis in axes:
        axis.set_xlabel('epoch')
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def plot_image_grid(images: Sequence[np.ndarray], titles: Sequence[str], title: str = '',
                    columns: int = 4):
    """RGB images in a grid with a title above each."""
    columns = max(1, min(columns, len(images)))
    rows = max(1, int(np.ceil(len(images) / columns)))
    figure = Figure(figsize=(3 * columns, 3.3 * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    for axis, image, caption in zip(axes.flat, images, titles):
        axis.imshow(image)
        axis.set_title(caption, fontsize=8, **VERBATIM)
    if title:
        figure.suptitle(title, **VERBATIM)
    figure.tight_layout()
    return figure


def plot_reliability(before: dict, after: dict, before_metrics: dict, after_metrics: dict,
                     title: str = 'Reliability on val (after: cross-fitted)'):
    """Accuracy against confidence per bin, before and after temperature scaling (tables of
    :func:`~bioplugin.evaluation.temperature_scaling.reliability`); the diagonal is perfect
    calibration, bars below it are overconfidence."""
    figure = Figure(figsize=(9, 4.2))
    axes = figure.subplots(1, 2, sharey=True)
    for ax, table, metrics, name in ((axes[0], before, before_metrics, 'model scores'),
                                     (axes[1], after, after_metrics, 'calibrated')):
        edges = np.asarray(table['edges'])
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        accuracy = np.nan_to_num(np.asarray(table['accuracy'], float))
        ax.bar(centres, accuracy, width=width * 0.95, color='#4c72b0', label='accuracy')
        ax.plot([0, 1], [0, 1], '--', color='grey', linewidth=1)
        for x, n in zip(centres, table['count']):
            if n:
                ax.text(x, 0.02, str(n), ha='center', fontsize=7, color='white')
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel='confidence (top-1 score)',
               title=f"{name}: ECE {metrics['ece']:.3f}, NLL {metrics['nll']:.3f}, "
                     f"Brier {metrics['brier']:.3f}")
        ax.title.set_fontsize(9)
    axes[0].set_ylabel('accuracy (images per bin at the bottom)')
    figure.suptitle(title, fontsize=10)
    return figure


def plot_risk_coverage(curve: pd.DataFrame, operating_point=None, target_precision=None,
                       title: str = 'Risk against coverage on val'):
    """Share of accepted images that are wrong (risk) against the share accepted (coverage),
    accepting the highest scores first (:func:`~bioplugin.analysis.error_gallery.
    risk_coverage`); ``operating_point`` = ``(coverage, risk)`` of the review thresholds."""
    figure = Figure(figsize=(5.5, 4))
    ax = figure.subplots()
    ax.step(curve.coverage, curve.risk, where='post', color='#4c72b0', label='accept the k '
            'highest scores')
    if target_precision is not None:
        ax.axhline(1 - target_precision, linestyle='--', color='grey', linewidth=1,
                   label=f'risk at {target_precision:.0%} precision')
    if operating_point is not None:
        ax.plot(*operating_point, 'o', color='#c44e52', label='review thresholds')
    ax.set(xlim=(0, 1), ylim=(0, max(0.05, float(curve.risk.max()) * 1.1) if len(curve) else 1),
           xlabel='coverage (share of val images accepted)',
           ylabel='risk (share of accepted that are wrong)')
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def plot_abundance(table: pd.DataFrame, level: float = 0.95,
                   max_classes: Optional[int] = MAX_NAMED_CLASSES):
    """One stacked bar per group (per group and method when the table has a ``method``
    column) of the class proportions of an abundance table
    (:func:`~bioplugin.evaluation.abundance.abundance_table`), each segment with its
    interval as an error bar at its top (spread across the bar, one place per class, so
    that the bars of neighbouring segments do not hide each other). Beyond ``max_classes`` classes (None: no limit) the
    most abundant are named and the rest drawn as one grey segment."""
    classes_only = table[table['proportion'].notna()]
    keys = [key for key in ('group', 'method') if key in table]
    bars = (list(classes_only.groupby(keys, sort=False)) if keys else [((), classes_only)])
    names = list(dict.fromkeys(classes_only['class']))
    mean = classes_only.groupby('class', sort=False)['proportion'].mean()
    named = names if max_classes is None or len(names) <= max_classes else list(
        mean.sort_values(ascending=False, kind='stable').index[:max_classes])
    colours = matplotlib.colormaps['tab20'](np.arange(len(named)) % 20)
    figure = Figure(figsize=(float(np.clip(2 + 0.8 * len(bars), 5, 24)),
                             float(np.clip(3 + 0.18 * len(named), 4.5, 14))))
    axis = figure.subplots()
    for x, (key, rows) in enumerate(bars):
        rows = rows.set_index('class')
        base = 0.0
        for place, (colour, name) in enumerate(zip(colours, named)):
            share = float(rows.loc[name, 'proportion'])
            axis.bar(x, share, bottom=base, color=colour, width=0.6,
                     label=name if x == 0 else None)
            top = base + share
            axis.errorbar(x - 0.25 + 0.5 * (place + 0.5) / len(named), top, yerr=[[share - rows.loc[name, 'ci_low']],
                                        [rows.loc[name, 'ci_high'] - share]],
                          color='black', capsize=3, linewidth=0.8)
            base = top
        rest = float(rows.drop(index=named)['proportion'].sum())
        if rest > 0:
            axis.bar(x, rest, bottom=base, color='lightgrey', width=0.6,
                     label=f'{len(names) - len(named)} other classes' if x == 0 else None)
    labels = [' · '.join(map(str, key if isinstance(key, tuple) else (key, )))
              for key, _ in bars]
    axis.set_xticks(np.arange(len(bars)), labels, rotation=30 if len(bars) > 4 else 0,
                    ha='right' if len(bars) > 4 else 'center', **VERBATIM)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel('proportion of the counted images')
    axis.set_title(f'Class proportions with {level:.0%} intervals (unknown and unreadable '
                   'images left out)', fontsize=10)
    legend = axis.legend(loc='upper left', bbox_to_anchor=(1.01, 1), fontsize=8)
    for text in legend.get_texts():
        text.set(**VERBATIM)
    figure.tight_layout()
    return figure
