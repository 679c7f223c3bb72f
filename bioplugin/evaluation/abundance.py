"""Abundance tables: how many of each class a sample (or each group of it) holds.

::

    from bioplugin.apis import BioClassifier
    table = BioClassifier(config, checkpoint).abundance('tow_17/', method='pacc')

One row per class (``class, count, proportion, ci_low, ci_high``; ``group`` first when
grouped, ``method`` with ``method='all'``), then a row for the images flagged unknown and
one for those that could not be read: they are counted apart, with no proportion, and the
classes' proportions are of the other images. ``count`` is the proportion of those images,
rounded so that a group's counts add up to its images. The proportions come from
:mod:`~bioplugin.evaluation.quantification`; a group file (``image,group`` rows: sample,
station, trap, date) splits the images into groups, each estimated on its own.
"""
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
import pandas as pd

from ..errors import ConfigError, DatasetError
from .quantification import DEFAULT_METHOD, LEVEL, METHODS, em_priors, adapt_posteriors, quantify

UNKNOWN_ROW = '(unknown)'
UNREADABLE_ROW = '(unreadable)'
ALL = 'all'


def read_group_file(path: str, images: Sequence[str]) -> tuple:
    """The group of each of ``images`` (paths) from a CSV with ``image`` and ``group``
    columns, an image named by its file name or its stem. Returns ``(groups, warnings)``;
    an image the file leaves out stops with one sentence naming it, rows naming no image of
    the folder are a warning."""
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise DatasetError(f'Group file {path!r} cannot be read ({error}).') from None
    if not {'image', 'group'} <= set(table.columns):
        raise DatasetError(f'Group file {path!r} needs the columns image,group (it has '
                           f'{", ".join(map(str, table.columns))}).')
    by_name: Dict[str, str] = {}
    for image, group in zip(table['image'], table['group']):
        if by_name.get(image, group) != group:
            raise DatasetError(f'Group file {path!r} puts {image!r} into two groups '
                               f'({by_name[image]!r} and {group!r}).')
        by_name[image] = group
    groups, used, missing = [], set(), []
    for image in images:
        name = osp.basename(image)
        key = name if name in by_name else osp.splitext(name)[0]
        if key not in by_name:
            missing.append(name)
            groups.append(None)
            continue
        used.add(key)
        groups.append(by_name[key])
    if missing:
        raise DatasetError(f'Group file {path!r} gives no group for {len(missing)} of the '
                           f'{len(images)} images (e.g. {", ".join(map(repr, missing[:5]))}); '
                           'add a row image,group for each.')
    unused = sorted(set(by_name) - used)
    warnings = [f'{len(unused)} row(s) of {path!r} name no image of the folder (e.g. '
                f'{", ".join(map(repr, unused[:5]))}); they are left out'] if unused else []
    return groups, warnings


def group_masks(groups: Optional[Sequence[str]], count: int):
    """``(group, mask)`` for each group of ``count`` images in the order of its first image
    (``groups``: one label per image; None: all images are one group, ``''``)."""
    labels = (np.full(count, '', dtype=object) if groups is None
              else np.array([str(group) for group in groups], dtype=object))
    for group in dict.fromkeys(labels.tolist()):
        yield group, labels == group


def largest_remainder(proportions: np.ndarray, total: int) -> np.ndarray:
    """Whole counts in ``proportions`` of ``total`` that add up to ``total``."""
    if total == 0 or np.isnan(proportions).any():
        return np.zeros(len(proportions), int)
    raw = np.asarray(proportions, float) / max(proportions.sum(), 1e-300) * total
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind='stable')
    counts[order[:total - counts.sum()]] += 1
    return counts


def group_rows(posteriors: np.ndarray, counted: np.ndarray, unknown: np.ndarray,
               unreadable: np.ndarray, val: dict, classes: Sequence[str], method: str,
               bootstrap: int, seed: int, level: float) -> tuple:
    """The rows of one group (one method): ``(frame, warnings)``."""
    result = quantify(posteriors[counted], val['posteriors'], val['labels'], method,
                      bootstrap=bootstrap, seed=seed, level=level, class_names=classes)
    frame = pd.DataFrame(dict(
        **{'class': list(classes)},
        count=largest_remainder(result['proportions'], int(counted.sum())),
        proportion=result['proportions'], ci_low=result['ci_low'], ci_high=result['ci_high']))
    apart = pd.DataFrame({'class': [UNKNOWN_ROW, UNREADABLE_ROW],
                          'count': [int(unknown.sum()), int(unreadable.sum())],
                          'proportion': np.nan, 'ci_low': np.nan, 'ci_high': np.nan})
    if result['method'] != method:
        frame.insert(0, 'method', f"{method} (as {result['method']})")
    return pd.concat([frame, apart], ignore_index=True), result['warnings']


def abundance_table(scores: np.ndarray, unknown: Optional[np.ndarray], val: dict,
                    classes: Sequence[str], groups: Optional[Sequence[str]] = None,
                    method: str = DEFAULT_METHOD, bootstrap: int = 1000, seed: int = 0,
                    level: float = LEVEL) -> pd.DataFrame:
    """The abundance table of images whose calibrated ``scores`` are ``(N, C)`` (NaN rows:
    unreadable), ``unknown`` flags (None: none flagged), ``val`` (``posteriors`` and
    ``labels`` of the known val images, calibrated alike), in ``groups`` (one label per
    image, None: one sample). ``method`` is one of ``METHODS`` or ``'all'``. The warnings
    are in ``frame.attrs['warnings']``."""
    methods = list(METHODS) if method == ALL else [method]
    if any(name not in METHODS for name in methods):
        raise ConfigError(f'Unknown method {method!r}; choose one of '
                          f'{", ".join(METHODS + (ALL, ))}.')
    if set(classes) & {UNKNOWN_ROW, UNREADABLE_ROW}:
        raise ConfigError(f'A class is named {UNKNOWN_ROW!r} or {UNREADABLE_ROW!r}, the names '
                          'of the rows counted apart; rename its folder.')
    scores = np.asarray(scores, np.float64)
    unreadable = np.isnan(scores).any(1)
    unknown = (np.zeros(len(scores), bool) if unknown is None
               else np.asarray(unknown, bool) & ~unreadable)
    if unreadable.all():
        raise DatasetError(f'None of the {len(scores)} images could be read: nothing to count.')
    frames, warnings = [], []
    for group, mine in group_masks(groups, len(scores)):
        for name in methods:
            frame, said = group_rows(scores, mine & ~unreadable & ~unknown, mine & unknown,
                                     mine & unreadable, val, classes, name, bootstrap, seed,
                                     level)
            if len(methods) > 1 and 'method' not in frame:
                frame.insert(0, 'method', name)
            elif len(methods) == 1 and 'method' in frame:
                frame = frame.drop(columns='method')
            if groups is not None:
                frame.insert(0, 'group', group)
            frames.append(frame)
            where = f'group {group!r}: ' if groups is not None else ''
            warnings += [f'{where}{warning}' for warning in said]
    table = pd.concat(frames, ignore_index=True)
    table.attrs['warnings'] = list(dict.fromkeys(warnings))
    return table


def adapt_to_groups(scores: np.ndarray, counted: np.ndarray, source_priors: np.ndarray,
                    classes: Sequence[str], groups: Optional[Sequence[str]] = None) -> tuple:
    """Each image's calibrated ``scores`` under its group's class mix, estimated by EM on
    the group's ``counted`` images (readable, not unknown) from the val mix
    ``source_priors``. Returns ``(adapted scores, record)``: the record holds the
    ``source_priors`` and, per group, its ``images``, ``counted`` and ``priors``."""
    scores = np.asarray(scores, np.float64)
    adapted = scores.copy()
    record = dict(method='em', source_priors=dict(zip(classes, map(float, source_priors))),
                  groups={})
    for group, mine in group_masks(groups, len(scores)):
        use = mine & counted
        if use.any():
            priors, iterations = em_priors(scores[use], source_priors)
            priors = priors[0]
            adapted[mine] = adapt_posteriors(scores[mine], priors, source_priors)
        else:
            priors, iterations = np.asarray(source_priors, float), 0
        record['groups'][group] = dict(images=int(mine.sum()), counted=int(use.sum()),
                                       priors=dict(zip(classes, map(float, priors))),
                                       iterations=int(iterations))
    return adapted, record


def val_reference(val_set: dict, scores) -> dict:
    """The known val images' calibrated ``posteriors`` (``scores``: the post-processor's
    logits → scores) and ``labels``, from the val set kept at calibration."""
    known = val_set['known']
    return dict(posteriors=scores(val_set['logits'][known]), labels=val_set['labels'][known])


def source_priors(val: dict, num_classes: int) -> np.ndarray:
    """The val mix the calibrated posteriors were fitted under."""
    return np.bincount(val['labels'], minlength=num_classes) / max(len(val['labels']), 1)


def format_abundance(table) -> str:
    """The table as the console shows it: proportions in per cent, intervals beside."""
    lines = []
    for _, row in table.iterrows():
        where = ' '.join(str(row[key]) for key in ('group', 'method') if key in table)
        share = ('' if row['proportion'] != row['proportion'] else
                 f"{row['proportion']:7.1%}  [{row['ci_low']:.1%}, {row['ci_high']:.1%}]")
        lines.append(f"{where + '  ' if where else ''}{row['class']}: {row['count']} {share}")
    return '\n'.join(lines)
