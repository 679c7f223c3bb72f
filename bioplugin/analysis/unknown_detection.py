"""How well the unknown score tells images of classes the model never saw from known ones.

``tools/analysis/open_set.py CONFIG CHECKPOINT --unknown-dir DIR`` is the command line: the
val split is the known side, ``DIR`` (images, or one sub-folder of images per unseen class)
the unknown side.
"""
import copy
import os
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
from mmengine.config import Config

from ..apis import evaluate, load_config
from ..datasets.folder_layout import scan_images
from ..engine.checkpoint_io import resolve_checkpoint
from ..errors import ConfigError, DatasetError
from ..evaluation.model_facts import ModelFacts
from ..evaluation.unknown_score import SIGNALS, open_set_auroc

SIGNAL_NAMES = dict(max_softmax='max softmax score', energy='energy of the logits',
                    distance='kNN feature distance', unknown_score='unknown score (ours)')


def unknown_folders(unknown_dir: str) -> List[str]:
    """``unknown_dir`` when it holds images, else its sub-folders that do."""
    if not osp.isdir(unknown_dir):
        raise DatasetError(f'--unknown-dir {unknown_dir!r} is not a folder.')
    if scan_images(unknown_dir):
        return [unknown_dir]
    folders = sorted(osp.join(unknown_dir, name) for name in os.listdir(unknown_dir)
                     if osp.isdir(osp.join(unknown_dir, name))
                     and scan_images(osp.join(unknown_dir, name)))
    if not folders:
        raise DatasetError(f'--unknown-dir {unknown_dir!r} holds no images (directly or one '
                           'folder deep).')
    return folders


def folder_config(cfg: Config, folder: str) -> Config:
    """``cfg`` whose unlabeled test split is ``folder``."""
    cfg = copy.deepcopy(cfg)
    dataset = cfg.test_dataloader.dataset
    dataset.update(data_root=osp.dirname(osp.abspath(folder)),
                   data_prefix=osp.basename(osp.abspath(folder)), labeled=False)
    return cfg


def open_set_signals(evaluation: dict) -> Dict[str, np.ndarray]:
    """Every signal of an evaluation's readable images, higher = more likely unknown."""
    readable = ~np.isnan(evaluation['scores']).any(1)
    frame = evaluation['predictions']
    raw = evaluation['facts'].detector.signals(evaluation['logits'][readable],
                                               evaluation['features'][readable])
    signals = dict(max_softmax=-evaluation['scores'][readable].max(1),
                   unknown_score=frame['unknown_score'].to_numpy()[readable])
    signals.update({name: raw[:, i] for i, name in enumerate(SIGNALS)})
    return signals


def measure_open_set(config, checkpoint: str, unknown_dir: str,
                     out_dir: Optional[str] = None, trust_checkpoint: bool = False,
                     raw_names: bool = False) -> dict:
    """AUROC and FPR at 95 % TPR of every signal, val images against those of
    ``unknown_dir`` (all together and per sub-folder), and the share of each side the
    stored threshold flags. ``raw_names`` writes the per-image CSVs without the formula guard
    on names."""
    cfg = config if isinstance(config, Config) else load_config(config)
    checkpoint = resolve_checkpoint(checkpoint)
    facts = ModelFacts.from_checkpoint(checkpoint, classes=())  # before any image is read
    if facts.detector is None:
        reason = '; '.join(facts.notes) or 'run tools/analysis/calibrate.py on its work dir ' \
            '(20 val images or more)'
        raise ConfigError(f'{checkpoint!r} has no unknown threshold yet: {reason}.')
    record = facts.detector.record
    out_dir = out_dir or osp.join(osp.dirname(checkpoint), 'open_set')
    options = dict(trust_checkpoint=trust_checkpoint, out_dir=out_dir, raw_names=raw_names)
    known = open_set_signals(evaluate(cfg, checkpoint, 'val', **options))
    groups = {}
    for folder in unknown_folders(unknown_dir):
        evaluation = evaluate(folder_config(cfg, folder), checkpoint, 'test',
                              csv=osp.join(out_dir, f'unknown_{osp.basename(folder)}.csv'),
                              **options)
        groups[osp.basename(folder)] = open_set_signals(evaluation)
    unknown = {name: np.concatenate([group[name] for group in groups.values()])
               for name in known}
    threshold = record['threshold']
    return dict(
        threshold=threshold, k=record['k'], checkpoint=checkpoint,
        signals={name: open_set_auroc(known[name], unknown[name]) for name in SIGNAL_NAMES},
        per_folder={folder: open_set_auroc(known['unknown_score'], group['unknown_score'])
                    for folder, group in groups.items()} if len(groups) > 1 else {},
        known_kept=float((known['unknown_score'] <= threshold).mean()),
        unknown_flagged=float((unknown['unknown_score'] > threshold).mean()))


def format_open_set(result: dict) -> str:
    """The table a tool prints."""
    first = result['signals']['unknown_score']
    lines = [f"{first['known_images']} val images (known) against {first['unknown_images']} "
             'images of other classes (unknown)',
             f"{'signal':28}{'AUROC':>8}{'FPR at 95% TPR':>16}"]
    for name, label in SIGNAL_NAMES.items():
        entry = result['signals'][name]
        lines.append(f"{label:28}{entry['auroc']:8.3f}{entry['fpr_at_95_tpr']:16.1%}")
    for folder, entry in result['per_folder'].items():
        lines.append(f"  {folder:26}{entry['auroc']:8.3f}{entry['fpr_at_95_tpr']:16.1%}")
    lines.append(f"threshold {result['threshold']:.3f}: {result['known_kept']:.1%} of val kept "
                 f"as known, {result['unknown_flagged']:.1%} of the other images flagged "
                 'unknown')
    lines.append('AUROC 0.5 is chance; trust the flag when the unknown score reaches 0.9 or '
                 'more on images like the ones you expect.')
    return '\n'.join(lines)
