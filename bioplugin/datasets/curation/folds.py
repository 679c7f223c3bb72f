"""Stratified, optionally grouped, splits of the labeled images: K folds for cross-validation
(``tools/kfold.py``) and one train / val split (``tools/data/split.py``).

Folds are scikit-learn's ``StratifiedKFold`` (``StratifiedGroupKFold`` with a group file), as
MMPretrain's k-fold tool splits a dataset; each fold is written as a normal
``train/<class>/`` + ``val/<class>/`` folder of links to the images, so the fold trains and
evaluates through the same dataset, config and Runner as any other run. A group file is a CSV
whose first column names an image and whose second its group (specimen, site, date)::

    image,group
    train/Chaetoceros/img_001.jpg,specimen_17
    val/Chaetoceros/img_042.jpg,specimen_17

Images of one group never straddle two folds. An image is named by its path under the data
root, under its split, or by its file name when that is unique.
"""
import csv
import json
import os
import os.path as osp
import shutil
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from ...errors import DatasetError
from ...fileio import atomic_write
from ..folder_layout import class_folders, scan_images

LABELED_SPLITS = ('train', 'val')
MANIFEST = 'fold_manifest.json'


def labeled_images(data_root: str, splits: Sequence[str] = LABELED_SPLITS) -> pd.DataFrame:
    """Every image of the labeled ``splits`` of ``data_root`` (``path``, ``split``, ``label``,
    ``name`` = path under the data root); ``splits=('.', )`` reads class folders directly
    under ``data_root``."""
    train = osp.join(data_root, splits[0])
    if not osp.isdir(train):
        raise DatasetError(f'{data_root!r} has no {splits[0]}/ folder of class folders.')
    rows = []
    for split in splits:
        folder = osp.join(data_root, split)
        if not osp.isdir(folder):
            continue
        for label in class_folders(folder):
            for path in scan_images(osp.join(folder, label), recursive=True):
                rows.append(dict(path=osp.abspath(path), split=split, label=label,
                                 name=osp.relpath(path, data_root).replace(os.sep, '/')))
    frame = pd.DataFrame(rows, columns=['path', 'split', 'label', 'name'])
    if frame.empty:
        raise DatasetError(f'{data_root!r} holds no labeled images under '
                           f'{", ".join(s + "/<class>/" for s in splits)}.')
    return frame


def read_groups(group_file: str, images: pd.DataFrame) -> np.ndarray:
    """The group of every row of ``images`` from a group CSV; one sentence naming the rows
    when an image is missing, unknown or listed twice."""
    if not osp.isfile(group_file):
        raise DatasetError(f'Group file {group_file!r} does not exist.')
    with open(group_file, newline='', encoding='utf-8') as file:
        rows = [row for row in csv.reader(file) if row and any(cell.strip() for cell in row)]
    if rows and rows[0][0].strip().lower() in ('image', 'image_name', 'path', 'file'):
        rows = rows[1:]
    keys = {}
    for name, under_split in zip(images.name, images.name.str.split('/', n=1).str[1]):
        for key in (name, under_split, osp.basename(name)):
            keys.setdefault(key, []).append(name)
    group_of, problems = {}, []
    for number, row in enumerate(rows, start=2):
        if len(row) < 2 or not row[1].strip():
            problems.append(f'row {number} has no group')
            continue
        matches = keys.get(row[0].strip(), [])
        if len(matches) != 1:
            problems.append(f'row {number} names {row[0]!r}, which is '
                            + ('no image of the data root' if not matches else
                               f'{len(matches)} images; give its path'))
            continue
        if matches[0] in group_of:
            problems.append(f'row {number} lists {matches[0]!r} a second time')
        group_of[matches[0]] = row[1].strip()
    missing = [name for name in images.name if name not in group_of]
    if missing:
        problems.append(f'{len(missing)} image(s) have no group, e.g. {missing[0]!r}')
    if problems:
        raise DatasetError(f'Group file {group_file!r}: ' + '; '.join(problems[:5])
                           + ('; …' if len(problems) > 5 else '') + '.')
    return images.name.map(group_of).to_numpy()


def assign_folds(labels: Sequence[str], folds: int, groups: Optional[Sequence] = None,
                 seed: int = 0) -> np.ndarray:
    """The fold (0 … ``folds`` - 1) of every image: stratified by label (each class's images
    spread evenly), a group's images in one fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    labels = np.asarray(labels)
    if folds < 2:
        raise DatasetError(f'--folds {folds}: cross-validation needs at least 2 folds.')
    counts = pd.Series(labels).value_counts()
    small = counts[counts < folds]
    if len(small):
        raise DatasetError(
            f'{len(small)} class(es) have fewer images than the {folds} folds (e.g. '
            f'{small.index[0]!r}: {small.iloc[0]}); use fewer folds or more images.')
    if groups is not None and len(set(groups)) < folds:
        raise DatasetError(f'{len(set(groups))} groups cannot fill {folds} folds; use fewer '
                           'folds.')
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed) if groups is None
                else StratifiedGroupKFold(folds, shuffle=True, random_state=seed))
    fold_of = np.empty(len(labels), int)
    for fold, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold_of[held_out] = fold
    return fold_of


def write_split(images: pd.DataFrame, is_val: np.ndarray, out_root: str,
                copy: bool = False) -> str:
    """``out_root/train/<class>/`` and ``out_root/val/<class>/`` holding links to (or, with
    ``copy``, copies of) the images; a file is named ``<split>__<name>`` after where it came
    from, so two files of one name never collide. An existing folder written for the same
    images is kept as it is."""
    manifest = dict(train=sorted(images.name[~is_val]), val=sorted(images.name[is_val]))
    manifest_path = osp.join(out_root, MANIFEST)
    if osp.isfile(manifest_path):
        with open(manifest_path) as file:
            if json.load(file) == manifest:
                return out_root
    for split in LABELED_SPLITS:
        shutil.rmtree(osp.join(out_root, split), ignore_errors=True)
    for (path, label, name), val in zip(images[['path', 'label', 'name']].itertuples(
            index=False), is_val):
        target = osp.join(out_root, 'val' if val else 'train', label,
                          name.replace('/', '__'))
        os.makedirs(osp.dirname(target), exist_ok=True)
        if copy:
            shutil.copy2(path, target)
        else:
            os.symlink(path, target)
    atomic_write(manifest_path, json.dumps(manifest, indent=1))
    return out_root


def fold_shares(images: pd.DataFrame, fold_of: np.ndarray) -> pd.DataFrame:
    """Images per class (rows) and fold (columns), with the totals."""
    table = pd.crosstab(pd.Series(images.label.to_numpy(), name='class'),
                        pd.Series(fold_of, name='fold'))
    table['total'] = table.sum(1)
    return table


