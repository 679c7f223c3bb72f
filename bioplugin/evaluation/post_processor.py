"""The one way from a model's logits to a prediction table.

``tools/test.py`` (through :class:`~bioplugin.evaluation.PredictionWriter`), the Python API
(:class:`~bioplugin.apis.BioClassifier`) and an exported ONNX file all end here, so the same
logits give the same table, columns in one order::

    image_name, pred_label, [pred_index], [pred_name], score, [top{i}_label, [top{i}_name],
    top{i}_score …], [status], [unknown, unknown_score], [<rank>_label, <rank>_score …,
    confident_rank], [decision]

Scores are ``softmax(logits / T)`` with the model's calibration temperature ``T`` (see
:mod:`~bioplugin.evaluation.temperature_scaling`), computed once in float64; the unknown
score comes from the same logits and the head's features; with ``adapt_priors`` the scores
are then re-weighted to the class mix each sample (group) is estimated to hold (EM,
:mod:`~bioplugin.evaluation.quantification`); review decisions read those scores.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

from ..errors import ConfigError
from .abundance import adapt_to_groups, source_priors, val_reference
from .model_facts import ModelFacts
from .prediction_table import prediction_frame, read_class_names
from .review import decisions
from .taxonomy import CONFIDENT, Taxonomy, add_rank_columns, read_taxonomy
from .temperature_scaling import calibrated_scores


def sample_outputs(sample) -> dict:
    """What a model's prediction for one image holds, as numpy arrays: ``logits`` (float64),
    the head's ``feature`` and an ONNX graph's ``unknown_score`` (None when absent).

    Logits are used only where they give the sample's score (``pred_score`` is their
    softmax, as every head and exported graph of bioplugin sets it). A sample whose score was
    made otherwise — averaged over views by MMPretrain's test-time augmentation, which keeps
    the first view's other fields — contributes its scores' logarithm (the same softmax) and
    no feature."""
    score = sample.get('pred_score').double().cpu()  # a DataSample, or the dict of one
    logits, feature = sample.get('pred_logits'), sample.get('pred_feature')
    if logits is None or not torch.allclose(torch.softmax(logits.double().cpu(), 0), score,
                                            rtol=1e-4, atol=1e-5):
        with np.errstate(divide='ignore'):
            logits, feature = np.log(score.numpy()), None
    else:
        logits = logits.double().cpu().numpy()
    unknown = sample.get('pred_unknown_score')
    return dict(logits=logits,
                feature=None if feature is None else feature.float().cpu().numpy(),
                unknown_score=None if unknown is None else float(unknown.reshape(-1)[0]))


def stack_outputs(outputs: Sequence[dict], num_classes: int) -> dict:
    """The per-image outputs of :func:`sample_outputs` as arrays: ``logits`` ``(N, C)``,
    ``features`` ``(N, D)`` and ``unknown_scores`` ``(N,)`` (None unless every image has
    them)."""
    def stacked(key):
        if not outputs or any(output[key] is None for output in outputs):
            return None
        return np.stack([output[key] for output in outputs])

    logits = stacked('logits')
    return dict(logits=np.zeros((0, num_classes)) if logits is None else logits,
                features=stacked('feature'), unknown_scores=stacked('unknown_score'))


class PostProcessor:
    """Logits (and head features) of images → the prediction table.

    Built once per run from the model's :class:`~bioplugin.evaluation.model_facts.ModelFacts`
    and the table's options: ``raw_scores`` (no temperature, and so no ``decision``),
    ``topk``, ``class_names`` (a ``label,name`` file or a mapping), ``include_index``,
    ``taxonomy`` (a CSV or a :class:`~bioplugin.evaluation.taxonomy.Taxonomy`) with
    ``confident_threshold``, ``unknown`` (add the unknown columns when the model has an
    unknown threshold), ``unknown_label`` (written as the ``pred_label`` of unknown
    images) and ``adapt_priors`` (each image's scores under its sample's estimated class
    mix; the estimated priors are in ``frame.attrs['priors']``). A taxonomy or class-name
    file that does not fit the classes, and ``adapt_priors`` without the val posteriors it
    needs, are refused here, before any image is read.
    """

    def __init__(self, facts: ModelFacts, raw_scores: bool = False, topk: int = 1,
                 class_names: Union[str, Dict[str, str], None] = None,
                 include_index: bool = False, taxonomy: Union[str, Taxonomy, None] = None,
                 confident_threshold: float = CONFIDENT, unknown: bool = True,
                 unknown_label: Optional[str] = None, adapt_priors: bool = False):
        if raw_scores and adapt_priors:
            raise ConfigError('Adapting to a sample\'s class mix needs calibrated scores; '
                              'leave out --raw-scores.')
        if raw_scores:
            facts = facts.without_calibration()
        if not unknown:
            facts = facts.without_unknown()
        self.facts = facts
        self.classes = list(facts.classes)
        self.topk = topk
        self.class_names = (read_class_names(class_names, self.classes)
                            if isinstance(class_names, str) else class_names)
        self.include_index = include_index
        self.taxonomy = (read_taxonomy(taxonomy, self.classes) if isinstance(taxonomy, str)
                         else taxonomy)
        self.confident_threshold = confident_threshold
        self.unknown_label = unknown_label
        self.val = val_reference(facts.val_set(), self.scores) if adapt_priors else None

    @property
    def temperature(self) -> Optional[float]:
        return self.facts.temperature

    @property
    def unknown_threshold(self) -> Optional[float]:
        return self.facts.unknown_threshold

    def scores(self, logits: np.ndarray) -> np.ndarray:
        """The scores of the table: ``softmax(logits / T)``, float64, NaN rows stay NaN."""
        return calibrated_scores(logits, self.temperature)

    def unknown_scores(self, logits: np.ndarray, features: Optional[np.ndarray],
                       computed: Optional[np.ndarray] = None) -> Optional[np.ndarray]:
        """``(N,)`` unknown scores, from the logits and features of a PyTorch model or as an
        ONNX graph ``computed`` them; None without an unknown threshold."""
        if self.unknown_threshold is None:
            return None
        if self.facts.detector is not None and features is not None:
            readable = ~np.isnan(logits).any(1)
            scores = np.full(len(logits), np.nan)
            scores[readable] = self.facts.detector(logits[readable].astype(np.float32),
                                                   features[readable])
            return scores
        return None if computed is None else np.asarray(computed, np.float64).reshape(-1)

    def table(self, names: Sequence[str], logits: np.ndarray,
              features: Optional[np.ndarray] = None,
              unknown_scores: Optional[np.ndarray] = None,
              errors: Optional[Dict[int, str]] = None,
              groups: Optional[Sequence[str]] = None) -> pd.DataFrame:
        """One row per image. ``logits`` ``(N, C)`` (NaN rows: unreadable images, with
        ``errors`` saying why), the head's ``features`` ``(N, D)`` and, from an ONNX graph,
        ``unknown_scores``; ``groups`` (one label per image) are the samples whose class
        mix ``adapt_priors`` estimates (None: all images are one)."""
        logits = np.array(logits, np.float64)  # a copy: the caller's arrays stay as they are
        errors = errors or {}
        logits[list(errors)] = np.nan
        scores = self.scores(logits)
        unknown = self.unknown_scores(logits, features, unknown_scores)
        if unknown is not None:
            unknown[list(errors)] = np.nan
        priors = None
        if self.val is not None:
            flagged = (np.zeros(len(scores), bool) if unknown is None
                       else unknown_flags(unknown, self.unknown_threshold))
            scores, priors = adapt_to_groups(
                scores, ~np.isnan(scores).any(1) & ~flagged,
                source_priors(self.val, len(self.classes)), self.classes, groups)
        frame = prediction_frame(names, scores, self.classes, topk=self.topk,
                                 class_names=self.class_names, include_index=self.include_index,
                                 errors=errors)
        if unknown is not None:
            add_unknown_columns(frame, unknown, self.unknown_threshold, self.unknown_label)
        if self.taxonomy is not None:
            add_rank_columns(frame, scores, self.taxonomy, self.confident_threshold)
        decision = decisions(frame, self.facts.review)
        if decision is not None:
            frame['decision'] = decision
        if priors is not None:
            frame.attrs['priors'] = priors
        return frame

    def notes(self) -> List[str]:
        """Why a column the user may expect is missing (e.g. a deleted feature bank)."""
        return list(self.facts.notes)


def unknown_flags(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Which images are flagged unknown: an unknown score above ``threshold``. An unreadable
    image (NaN score) is not flagged: its ``status`` says why it has no prediction."""
    return np.nan_to_num(np.asarray(scores, np.float64), nan=-np.inf) > threshold


def add_unknown_columns(frame: pd.DataFrame, scores: np.ndarray, threshold: float,
                        unknown_label: Optional[str] = None) -> pd.DataFrame:
    """``unknown`` (:func:`unknown_flags`) and ``unknown_score`` columns; with
    ``unknown_label`` that name replaces ``pred_label`` of the unknown rows."""
    scores = np.asarray(scores, np.float64)
    unknown = unknown_flags(scores, threshold)
    frame['unknown'] = unknown
    frame['unknown_score'] = scores
    if unknown_label is not None:
        frame.loc[unknown, 'pred_label'] = unknown_label
    return frame
