"""What a trained model says about its own predictions, read once per run.

A checkpoint records its class names; ``tools/analysis/calibrate.py`` (and the end of
``tools/train.py``) keeps beside it::

    best_accuracy_top1_epoch_12.calibration.json   temperature, review thresholds, the unknown
                                                   score's statistics and threshold (open_set)
    best_accuracy_top1_epoch_12.features.npz       the training images' head features
    best_accuracy_top1_epoch_12.val_posteriors.npz the val images' logits (float32), labels
                                                   and unknown flags, for quantification

An exported ONNX file carries the same facts in its metadata. :class:`ModelFacts` holds them;
this module is the one place that reads and writes those files, and every reader validates
what it reads (one sentence naming the fix when a file is damaged).
"""
import json
import math
import os.path as osp
import zipfile
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..errors import CheckpointError
from ..fileio import atomic_open, atomic_write
from .temperature_scaling import TEMPERATURE_RANGE
from .unknown_score import UnknownDetector

RECALIBRATE = 'run tools/analysis/calibrate.py on the work dir to write it again'


def calibration_file(checkpoint: str) -> str:
    """Where a checkpoint's calibration is kept: ``<checkpoint>.calibration.json``."""
    return osp.splitext(checkpoint)[0] + '.calibration.json'


def feature_bank_file(checkpoint: str) -> str:
    """Where a checkpoint's training features are kept: ``<checkpoint>.features.npz``."""
    return osp.splitext(checkpoint)[0] + '.features.npz'


def val_set_file(checkpoint: str) -> str:
    """Where a checkpoint's labeled val outputs are kept: ``<checkpoint>.val_posteriors.npz``
    (beside an exported ONNX file: ``<model>.val_posteriors.npz``)."""
    return osp.splitext(checkpoint)[0] + '.val_posteriors.npz'


def copy_val_set(checkpoint: str, model_file: str) -> Optional[str]:
    """Copy the val outputs kept beside ``checkpoint`` to sit beside ``model_file`` (an
    exported file whose logits are the checkpoint's); None when the checkpoint has none."""
    source = val_set_file(checkpoint)
    if not osp.isfile(source):
        return None
    with open(source, 'rb') as file:
        return atomic_write(val_set_file(model_file), file.read())


def save_calibration(checkpoint: str, calibration: dict) -> str:
    path = calibration_file(checkpoint)
    record = dict(calibration, checkpoint=osp.basename(checkpoint), fitted_on='val logits')
    atomic_write(path, json.dumps(record, indent=2))
    return path


def save_feature_bank(checkpoint: str, features: np.ndarray, labels: np.ndarray) -> str:
    path = feature_bank_file(checkpoint)
    with atomic_open(path, 'wb') as file:
        np.savez(file, features=np.asarray(features, np.float32),
                 labels=np.asarray(labels, np.int64))
    return path


def save_val_set(checkpoint: str, logits: np.ndarray, labels: np.ndarray,
                 known: Optional[np.ndarray] = None) -> str:
    """Keep the readable val images' raw ``logits`` (float32: the calibrated posteriors are
    ``softmax(logits / T)`` with the temperature beside them), ``labels`` and ``known`` (not
    flagged unknown), for :mod:`~bioplugin.evaluation.quantification`."""
    path = val_set_file(checkpoint)
    known = np.ones(len(labels), bool) if known is None else np.asarray(known, bool)
    with atomic_open(path, 'wb') as file:
        np.savez(file, logits=np.asarray(logits, np.float32),
                 labels=np.asarray(labels, np.int64), known=known)
    return path


def read_val_set(checkpoint: str, num_classes: int) -> dict:
    """The val outputs kept beside ``checkpoint``: ``logits`` ``(V, C)`` float64, ``labels``
    ``(V,)`` and ``known`` ``(V,)``, checked; a missing file says how to write it."""
    path = val_set_file(checkpoint)
    if not osp.isfile(path):
        raise CheckpointError(
            f'{checkpoint!r} has no val posteriors ({osp.basename(path)}), which estimating '
            f'abundances and adapting to a sample\'s class mix need; run '
            f'tools/analysis/calibrate.py on the work dir to write them (an fp32 ONNX file '
            f'exported afterwards gets a copy).')
    try:
        with np.load(path) as stored:
            logits, labels = np.asarray(stored['logits'], np.float64), stored['labels']
            known = np.asarray(stored['known'], bool)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(f'Val posteriors {path!r} are damaged ({type(error).__name__}); '
                              f'{RECALIBRATE}.') from None
    if (logits.ndim != 2 or logits.shape[1] != num_classes or labels.shape != (len(logits),)
            or known.shape != labels.shape or not np.isfinite(logits).all()
            or not np.issubdtype(labels.dtype, np.integer)
            or (len(labels) and not 0 <= labels.min() <= labels.max() < num_classes)):
        raise CheckpointError(f'Val posteriors {path!r} do not fit a model of {num_classes} '
                              f'classes (logits {logits.shape}, labels {labels.shape}); '
                              f'{RECALIBRATE}.')
    return dict(logits=logits, labels=labels.astype(np.int64), known=known)


def read_calibration(checkpoint: Optional[str]) -> Optional[dict]:
    """The calibration record stored beside ``checkpoint`` (None when it has none), checked:
    a finite temperature inside the fitted range, review thresholds in [0, 1] (or ``inf``:
    never accept)."""
    path = calibration_file(checkpoint) if checkpoint else None
    if not path or not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as file:
            record = json.load(file)
    except (OSError, ValueError) as error:
        raise CheckpointError(f'Calibration file {path!r} is damaged ({type(error).__name__}); '
                              f'{RECALIBRATE}.') from None
    if not isinstance(record, dict):
        raise CheckpointError(f'Calibration file {path!r} holds no calibration record; '
                              f'{RECALIBRATE}.')
    temperature = record.get('temperature')
    low, high = TEMPERATURE_RANGE
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and low <= temperature <= high):
        raise CheckpointError(f'Calibration file {path!r} has temperature {temperature!r}, not '
                              f'a number between {low} and {high}; {RECALIBRATE}.')
    for name, threshold in _review_thresholds(record.get('review')):
        if not (isinstance(threshold, (int, float)) and (0 <= threshold <= 1
                                                         or threshold == math.inf)):
            raise CheckpointError(f'Calibration file {path!r} has review threshold '
                                  f'{threshold!r} for {name!r}, outside [0, 1]; {RECALIBRATE}.')
    return record


def _review_thresholds(review: Optional[dict]):
    if not review:
        return
    yield 'every class', review.get('global_threshold')
    for name, entry in (review.get('classes') or {}).items():
        yield name, (entry or {}).get('threshold')


def read_feature_bank(checkpoint: str) -> np.ndarray:
    """The training features kept beside ``checkpoint``, ``(images, dimensions)`` float32."""
    path = feature_bank_file(checkpoint)
    try:
        with np.load(path) as stored:
            bank = np.asarray(stored['features'], np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(f'Feature bank {path!r} is damaged ({type(error).__name__}); '
                              f'{RECALIBRATE}.') from None
    if bank.ndim != 2 or not len(bank) or not np.isfinite(bank).all():
        raise CheckpointError(f'Feature bank {path!r} holds no usable features (shape '
                              f'{bank.shape}); {RECALIBRATE}.')
    return bank


@dataclass
class ModelFacts:
    """The facts a trained model's predictions are post-processed with.

    ``classes`` (class folder names, in the order of the logits), ``temperature`` (None: not
    calibrated), ``review`` (the thresholds of the ``decision`` column), ``detector`` (the
    unknown score of a PyTorch model, or None), ``unknown_threshold`` (also set for an ONNX
    file, whose graph computes the score), the whole ``calibration`` record, ``source`` (the
    checkpoint or ONNX file) and ``notes`` (why a capability is off, for the user)."""

    classes: tuple
    source: Optional[str] = None
    temperature: Optional[float] = None
    review: Optional[dict] = None
    detector: Optional[UnknownDetector] = None
    unknown_threshold: Optional[float] = None
    calibration: Optional[dict] = None
    notes: list = field(default_factory=list)

    @classmethod
    def from_checkpoint(cls, checkpoint: str, classes: Sequence[str],
                        unknown: bool = True) -> 'ModelFacts':
        """The facts of ``checkpoint``, whose ``classes`` the caller read with its weights
        (the checkpoint is not opened here). ``unknown=False`` skips the feature bank."""
        calibration = read_calibration(checkpoint)
        facts = cls(classes=tuple(classes), source=checkpoint, calibration=calibration)
        if not calibration:
            return facts
        facts.temperature, facts.review = calibration['temperature'], calibration.get('review')
        open_set = calibration.get('open_set') or {}
        if not unknown or open_set.get('threshold') is None:
            return facts
        if not osp.isfile(feature_bank_file(checkpoint)):
            facts.notes.append(f'no `unknown` column: the feature bank '
                               f'{feature_bank_file(checkpoint)!r} is missing; {RECALIBRATE}')
            return facts
        facts.detector = UnknownDetector(open_set, read_feature_bank(checkpoint))
        facts.unknown_threshold = facts.detector.threshold
        return facts

    @classmethod
    def from_onnx_metadata(cls, onnx_file: str, metadata: dict) -> 'ModelFacts':
        """The facts an exported file carries: its graph computes the unknown score, the
        metadata holds the temperature, review thresholds and unknown threshold."""
        open_set = metadata.get('open_set') or {}
        computes_unknown = 'unknown_score' in metadata.get('outputs', ())
        return cls(classes=tuple(metadata['classes']), source=onnx_file,
                   temperature=metadata.get('temperature'), review=metadata.get('review'),
                   unknown_threshold=open_set.get('threshold') if computes_unknown else None)

    def val_set(self) -> dict:
        """The labeled val split's ``logits``, ``labels`` and ``known`` flags kept at
        calibration (:func:`read_val_set`), for quantification and prior adaptation."""
        if self.source is None:
            raise CheckpointError('These predictions come from no checkpoint: no val '
                                  'posteriors to estimate abundances with.')
        return read_val_set(self.source, len(self.classes))

    def without_calibration(self) -> 'ModelFacts':
        """The model's own scores: no temperature, and so no review thresholds (they hold
        for calibrated scores only); the unknown score is computed from the logits and
        stays."""
        return ModelFacts(classes=self.classes, source=self.source, detector=self.detector,
                          unknown_threshold=self.unknown_threshold,
                          calibration=self.calibration, notes=list(self.notes))

    def without_unknown(self) -> 'ModelFacts':
        return ModelFacts(classes=self.classes, source=self.source,
                          temperature=self.temperature, review=self.review,
                          calibration=self.calibration, notes=list(self.notes))
