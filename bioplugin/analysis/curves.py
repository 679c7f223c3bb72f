"""Per-epoch training curves from a work dir, stitched across resumed runs.

Every run of a work dir (the first one and each ``--resume``) writes its own timestamped folder
with ``vis_data/scalars.json``: one JSON object per logged training iteration (with ``epoch``)
and per validation (with ``step`` = epoch). Runs are read in time order and a later run's record
of an epoch replaces an earlier one (a run killed mid-epoch repeats that epoch after resuming),
so every epoch appears exactly once.
"""
import glob
import json
import os.path as osp
from typing import List

import pandas as pd

from ..errors import DatasetError


def run_folders(work_dir: str) -> List[str]:
    """The run folders of ``work_dir`` that logged scalars, oldest first."""
    folders = sorted(osp.dirname(osp.dirname(path)) for path in
                     glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not folders:
        raise DatasetError(f'{work_dir!r} has no training logs (*/vis_data/scalars.json).')
    return folders


def _run_epochs(scalars_file: str) -> pd.DataFrame:
    """One row per epoch of a single run: mean train loss, first lr, validation metrics."""
    train, val = [], []
    with open(scalars_file) as file:
        for line in file:
            if line.strip():
                record = json.loads(line)
                (train if 'epoch' in record else val).append(record)
    columns = {}
    if train:
        frame = pd.DataFrame(train)
        by_epoch = frame.groupby('epoch')
        if 'loss' in frame:
            columns['train_loss'] = by_epoch['loss'].mean()
        if 'lr' in frame:
            columns['lr'] = by_epoch['lr'].first()
    if val:
        frame = pd.DataFrame(val).drop(columns=['data_time', 'time'], errors='ignore')
        frame = frame.groupby('step').last()
        for name in frame.columns:
            columns['val_loss' if name == 'loss' else f'val_{name}'] = frame[name]
    table = pd.DataFrame(columns)
    table.index.name = 'epoch'
    return table


def load_training_curves(work_dir: str) -> pd.DataFrame:
    """Epoch-indexed table (``train_loss``, ``lr``, ``val_accuracy/top1`` …) of all runs."""
    stitched = pd.DataFrame()
    for folder in run_folders(work_dir):
        run = _run_epochs(osp.join(folder, 'vis_data', 'scalars.json'))
        stitched = run.combine_first(stitched) if not stitched.empty else run
    stitched.index = stitched.index.astype(int)
    stitched.index.name = 'epoch'
    return stitched.sort_index()
