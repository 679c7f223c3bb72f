"""How many of each class a sample holds: quantification from calibrated posteriors.

Counting predicted labels (classify and count, ``cc``) is biased twice: every classifier
confuses some classes, and a sample's class mix is rarely the training set's (prior shift).
The methods here share one assumption, that what an image of a class looks like does not
change between the labeled val split and the sample, only the mix does:

- ``cc``: the share of images predicted as each class;
- ``pcc``: the mean calibrated posterior (probabilistic classify and count);
- ``acc``: ``cc`` adjusted by the val misclassification rates ``R[i, j] = P(pred i | true
  j)``, solving ``R p = q`` (Forman 2008);
- ``pacc``: ``pcc`` adjusted by the val rates of the posteriors, ``R[i, j] = E[p_i | true
  j]`` (Bella et al. 2010);
- ``em``: the sample's priors by expectation-maximisation, each image's posterior reweighted
  by ``prior / val prior`` until the priors are the mean posterior (Saerens, Latinne &
  Decaestecker 2002); :func:`adapt_posteriors` gives the reweighted posteriors.

An adjusted estimate outside the simplex (a singular or noisy ``R``) is projected onto it
(the nearest proportions that are >= 0 and sum to 1) and :func:`quantify` says so.

Confidence intervals come from one bootstrap over both sources of error: every round draws
the sample's images with replacement and the val images with replacement within each class
(its class counts are the split's design), refits the rates on those val images and
re-estimates. Rounds are vectorised (weights, not copies), so 1,000 rounds over 10,000
images take seconds (``tools/benchmark_abundance.py``).

QuaPy implements these methods too; it is not used here because it would pin six more
packages (dataset fetchers among them: ``ucimlrepo``, ``xlrd``, ``abstention``), and its
quantifiers refit one object per bootstrap round, where the bootstrap needs the rates and
the EM of 1,000 rounds at once.
"""
from typing import Dict, Optional, Sequence

import numpy as np

METHODS = ('cc', 'pcc', 'acc', 'pacc', 'em')
ADJUSTED = ('acc', 'pacc')  # need the val rates
NEEDS_VAL = ('acc', 'pacc', 'em')
# pacc: on a tiny trained model of overlapping classes under a 70/20/10 mix its error was
# 0.55x classify and count's (em 0.72x, acc 0.74x); em wins only on well-calibrated scores
# (docs/abundance.md)
DEFAULT_METHOD = 'pacc'
LEVEL = 0.95  # of the intervals
MIN_VAL_IMAGES = 20  # fewer: a warning and wider intervals
EM_TOLERANCE = 1e-6
EM_MAX_ITERATIONS = 1000
_CHUNK = 500_000  # rounds x images held at once by the EM


def crisp(posteriors: np.ndarray) -> np.ndarray:
    """One-hot rows of the arg-max class (the classify-and-count view of posteriors)."""
    posteriors = np.asarray(posteriors, np.float64)
    out = np.zeros_like(posteriors)
    if len(posteriors):
        out[np.arange(len(posteriors)), posteriors.argmax(1)] = 1.0
    return out


def weighted_mean(weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(rounds, classes)``: the mean of ``rows`` under each round's image ``weights``."""
    totals = weights.sum(1, keepdims=True)
    with np.errstate(invalid='ignore', divide='ignore'):
        return (weights @ rows) / totals


def class_rates(weights: np.ndarray, rows: np.ndarray, labels: np.ndarray,
                num_classes: int) -> np.ndarray:
    """``(rounds, classes, classes)``: ``R[b, i, j]``, the mean of column ``i`` of ``rows``
    (one-hot predictions or posteriors) over the val images of true class ``j`` under round
    ``b``'s ``weights``. A class without val images has a NaN column."""
    rates = np.full((len(weights), rows.shape[1], num_classes), np.nan)
    for j in range(num_classes):
        mine = labels == j
        if mine.any():
            rates[:, :, j] = weighted_mean(weights[:, mine], rows[mine])
    return rates


def project_to_simplex(values: np.ndarray) -> np.ndarray:
    """The nearest point (Euclidean) of the probability simplex to each row of ``values``
    (Held, Wolfe & Crowder's sort-and-threshold)."""
    values = np.asarray(values, np.float64)
    ordered = -np.sort(-values, axis=1)
    cumulative = np.cumsum(ordered, axis=1) - 1
    steps = np.arange(1, values.shape[1] + 1)
    positive = ordered - cumulative / steps > 0
    last = values.shape[1] - 1 - np.argmax(positive[:, ::-1], axis=1)
    shift = cumulative[np.arange(len(values)), last] / (last + 1)
    return np.maximum(values - shift[:, None], 0)


def adjust(observed: np.ndarray, rates: np.ndarray) -> tuple:
    """Solve ``rates @ p = observed`` per round by least squares (the pseudo-inverse, so a
    singular matrix gives the minimum-norm solution) and project onto the simplex. Returns
    ``(proportions, clipped)``, ``clipped`` True where the solution left the simplex."""
    solution = np.einsum('bij,bj->bi', np.linalg.pinv(rates), observed)
    clipped = (solution < -1e-9).any(1) | (np.abs(solution.sum(1) - 1) > 1e-6)
    return project_to_simplex(solution), clipped


def em_priors(posteriors: np.ndarray, source_priors: np.ndarray,
              weights: Optional[np.ndarray] = None, tolerance: float = EM_TOLERANCE,
              max_iterations: int = EM_MAX_ITERATIONS) -> tuple:
    """The sample's class priors by expectation-maximisation (Saerens et al. 2002):
    posteriors calibrated under ``source_priors`` (the val mix) are reweighted by
    ``priors / source_priors`` and renormalised, and the priors become their (``weights``-
    weighted, per round) mean, until no prior moves by more than ``tolerance``. Returns
    ``(priors (rounds, classes), iterations)``; without ``weights`` one round, every image
    once."""
    posteriors = np.asarray(posteriors, np.float64)
    source = np.asarray(source_priors, np.float64)
    weights = (np.ones((1, len(posteriors))) if weights is None
               else np.atleast_2d(np.asarray(weights, np.float64)))
    weights = weights / weights.sum(1, keepdims=True)
    present = source > 0
    base = posteriors[:, present] / source[present]  # p(y|x) / s(y): the likelihood's shape
    size = max(1, _CHUNK // max(1, len(base)))
    priors, iterations = np.zeros((len(weights), len(source))), 0
    for start in range(0, len(weights), size):
        chunk = weights[start:start + size]
        current = np.tile(source[present], (len(chunk), 1))
        active = np.arange(len(chunk))  # rounds still moving
        moving, mine = current, chunk
        for step in range(1, max_iterations + 1):
            # the mean re-weighted posterior, as two matrix products: image i's posterior
            # under priors q is base_i * q / (base_i . q)
            evidence = moving @ base.T
            np.divide(mine, evidence, out=evidence, where=evidence > 0)
            updated = moving * (evidence @ base)
            still = np.abs(updated - moving).max(1) >= tolerance
            moving = updated
            if not still.all():
                current[active] = moving
                active, moving, mine = active[still], moving[still], mine[still]
            if not len(active):
                break
        current[active] = moving
        iterations = max(iterations, step)
        priors[start:start + size][:, present] = current
    return priors, iterations


def adapt_posteriors(posteriors: np.ndarray, priors: np.ndarray,
                     source_priors: np.ndarray) -> np.ndarray:
    """Each image's posterior under the sample's ``priors``: ``p(y|x) * prior(y) /
    source(y)``, renormalised (NaN rows stay NaN; a class absent from the source keeps 0)."""
    posteriors = np.asarray(posteriors, np.float64)
    source = np.asarray(source_priors, np.float64)
    ratio = np.divide(np.asarray(priors, np.float64), source, out=np.zeros_like(source),
                      where=source > 0)
    adapted = posteriors * ratio
    with np.errstate(invalid='ignore', divide='ignore'):
        return adapted / adapted.sum(1, keepdims=True)


def estimate(method: str, posteriors: np.ndarray, sample_weights: np.ndarray,
             val_posteriors: np.ndarray, val_labels: np.ndarray,
             val_weights: np.ndarray) -> tuple:
    """Every round's proportions ``(rounds, classes)`` by ``method`` and, for the adjusted
    methods, which rounds were projected onto the simplex (else None)."""
    num_classes = posteriors.shape[1]
    if method == 'cc':
        return weighted_mean(sample_weights, crisp(posteriors)), None
    if method == 'pcc':
        return weighted_mean(sample_weights, posteriors), None
    if method == 'em':
        source = np.bincount(val_labels, minlength=num_classes) / len(val_labels)
        return em_priors(posteriors, source, sample_weights)[0], None
    rows, val_rows = ((crisp(posteriors), crisp(val_posteriors)) if method == 'acc'
                      else (posteriors, val_posteriors))
    observed = weighted_mean(sample_weights, rows)
    rates = class_rates(val_weights, val_rows, val_labels, num_classes)
    return adjust(observed, rates)


def resample_weights(rng: np.random.Generator, count: int, rounds: int,
                     strata: Optional[np.ndarray] = None) -> np.ndarray:
    """``(rounds, count)`` bootstrap weights: how often each item is drawn, with
    replacement, ``count`` draws a round (within each stratum, as many draws as it holds)."""
    if strata is None:
        return rng.multinomial(count, np.full(count, 1 / count), size=rounds).astype(float)
    weights = np.zeros((rounds, count))
    for stratum in np.unique(strata):
        mine = np.flatnonzero(strata == stratum)
        weights[:, mine] = rng.multinomial(len(mine), np.full(len(mine), 1 / len(mine)),
                                           size=rounds)
    return weights


def quantify(posteriors: np.ndarray, val_posteriors: Optional[np.ndarray],
             val_labels: Optional[np.ndarray], method: str = DEFAULT_METHOD,
             bootstrap: int = 1000, seed: int = 0, level: float = LEVEL,
             class_names: Optional[Sequence[str]] = None) -> Dict:
    """Class proportions of the sample whose calibrated ``posteriors`` are ``(N, C)``, by
    ``method`` (one of :data:`METHODS`), with ``level`` intervals from ``bootstrap`` rounds
    over the sample's and the val images (``val_posteriors``, ``val_labels``: the labeled val
    split, calibrated as the sample is).

    Returns ``proportions``, ``ci_low``, ``ci_high`` (``(C,)``), ``method`` (the one used)
    and ``warnings``: a method that needs val rates falls back to ``pcc`` when a class has no
    val image (its rates are unknown); an adjusted estimate projected onto the simplex, a
    singular rate matrix and a val split under :data:`MIN_VAL_IMAGES` images (intervals
    widened by ``sqrt(20 / images)``) are said. ``class_names`` name classes in warnings."""
    if method not in METHODS:
        raise ValueError(f'method {method!r}: choose one of {", ".join(METHODS)}')
    posteriors = np.asarray(posteriors, np.float64)
    count, num_classes = posteriors.shape
    names = list(class_names) if class_names is not None else [str(i) for i in
                                                                range(num_classes)]
    warnings = []
    if method in NEEDS_VAL:
        labels = np.asarray(val_labels if val_labels is not None else [], int)
        missing = sorted(set(range(num_classes)) - set(labels.tolist()))
        if val_posteriors is None or missing:
            shown = ', '.join(repr(names[i]) for i in missing[:10])
            warnings.append(
                f'{len(missing)} class(es) have no val image ({shown}): their '
                f'misclassification rates are unknown, so {method} falls back to pcc'
                if missing else f'no val posteriors: {method} falls back to pcc')
            method = 'pcc'
    val_posteriors = (np.zeros((0, num_classes)) if method not in NEEDS_VAL
                      else np.asarray(val_posteriors, np.float64))
    labels = (np.zeros(0, int) if method not in NEEDS_VAL else np.asarray(val_labels, int))
    if not count:
        empty = np.full(num_classes, np.nan)
        return dict(proportions=empty, ci_low=empty, ci_high=empty, method=method,
                    warnings=warnings + ['no image to count'])
    point, clipped = estimate(method, posteriors, np.ones((1, count)), val_posteriors,
                              labels, np.ones((1, len(labels))))
    if method in ADJUSTED:
        rates = class_rates(np.ones((1, len(labels))), crisp(val_posteriors)
                            if method == 'acc' else val_posteriors, labels, num_classes)[0]
        if np.linalg.matrix_rank(rates) < num_classes:
            warnings.append(f'the val misclassification matrix of {method} is singular (some '
                            'classes are indistinguishable on val): the least-squares '
                            'estimate is projected onto the simplex')
        elif clipped[0]:
            warnings.append(f'the {method} estimate fell outside the simplex (negative '
                            'proportions) and was projected onto it')
    rng = np.random.default_rng(seed)
    rounds = []
    for start in range(0, bootstrap, 100):
        size = min(100, bootstrap - start)
        sample_weights = resample_weights(rng, count, size)
        val_weights = (resample_weights(rng, len(labels), size, labels) if len(labels)
                       else np.ones((size, 0)))
        rounds.append(estimate(method, posteriors, sample_weights, val_posteriors, labels,
                               val_weights)[0])
    point = point[0]
    if rounds:
        draws = np.concatenate(rounds)
        tail = (1 - level) / 2
        low, high = np.quantile(draws, [tail, 1 - tail], axis=0)
    else:
        low, high = point.copy(), point.copy()
    if method in NEEDS_VAL and len(labels) < MIN_VAL_IMAGES:
        factor = np.sqrt(MIN_VAL_IMAGES / len(labels))
        low, high = point - factor * (point - low), point + factor * (high - point)
        warnings.append(f'only {len(labels)} val images (fewer than {MIN_VAL_IMAGES}): the '
                        f'misclassification rates are rough, the intervals widened '
                        f'{factor:.1f}x')
    return dict(proportions=point, ci_low=np.clip(np.minimum(low, point), 0, 1),
                ci_high=np.clip(np.maximum(high, point), 0, 1), method=method,
                warnings=warnings)
