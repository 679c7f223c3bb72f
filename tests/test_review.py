"""Review thresholds that hold on new images: the precision target is met on a large
held-out draw in at least the stated share of small val draws, where point-estimate
thresholds fall short in a measured share; what val too small for the target says."""
import numpy as np
import pytest

from bioplugin.apis.calibrate import review_summary
from bioplugin.evaluation.review import (NEVER, choose_thresholds, images_needed,
                                         precision_lower_bound, precision_threshold)

TARGET, CONFIDENCE, VAL_IMAGES, DRAWS = 0.85, 0.9, 40, 200


def draw(rng, count):
    """Top-1 scores of a calibrated 3-class model (``P(right | s) = s``, ``s`` in
    [1/3, 1], most near 1) and whether each prediction is right."""
    scores = rng.beta(1.5, 0.5, count) * 0.66 + 0.34
    return scores, rng.random(count) < scores


def held_out_precision(threshold, scores, correct):
    accepted = scores >= threshold
    # accepting nothing makes no mistake: the target holds
    return correct[accepted].mean() if accepted.any() else 1.0, accepted.mean()


def test_guaranteed_thresholds_hold_on_new_images_where_point_estimates_fall_short():
    held_scores, held_correct = draw(np.random.default_rng(0), 200_000)
    reached, accepting = {None: [], CONFIDENCE: []}, []
    rng = np.random.default_rng(1)
    for _ in range(DRAWS):
        scores, correct = draw(rng, VAL_IMAGES)
        for confidence in reached:
            threshold = precision_threshold(scores, correct, TARGET, confidence)
            precision, coverage = held_out_precision(threshold, held_scores, held_correct)
            reached[confidence].append(precision >= TARGET)
            if confidence is not None:
                accepting.append(coverage > 0)
    # measured: 98.5 % of the draws with the guarantee, 64.5 % with point estimates
    assert np.mean(reached[CONFIDENCE]) >= CONFIDENCE
    assert np.mean(reached[None]) <= 0.75
    assert np.mean(accepting) >= 0.5  # and it does accept images in most draws


def test_the_lower_bound_by_hand():
    # n right of n: the bound is (1 - confidence) ** (1 / n)
    assert precision_lower_bound(45, 45, 0.9) == pytest.approx(0.1 ** (1 / 45))
    assert precision_lower_bound(0, 5, 0.9) == 0 and precision_lower_bound(0, 0, 0.9) == 0
    assert images_needed(0.95, 0.9) == 45 and images_needed(0.95, None) == 1


def test_the_sequence_stops_at_the_first_threshold_that_fails():
    # 60 images, right but for the 50th from the top: 45..49 hold, 50 (49/50) does not
    scores = np.linspace(1, 0.5, 60)
    correct = np.ones(60, bool)
    correct[49] = False
    threshold = precision_threshold(scores, correct, 0.95, 0.9)
    assert threshold == pytest.approx(scores[48])
    # a later, larger cut that would hold again is never reached
    correct = np.ones(200, bool)
    correct[49] = False
    assert precision_threshold(np.linspace(1, 0.5, 200), correct, 0.95, 0.9) == pytest.approx(
        np.linspace(1, 0.5, 200)[48])


def test_val_too_small_for_the_target_says_what_it_can_guarantee():
    rng = np.random.default_rng(2)
    scores = rng.dirichlet([8, 1, 1], 40)
    review = choose_thresholds(scores, scores.argmax(1), ['a', 'b', 'c'])  # all right
    assert review['global_threshold'] == NEVER and review['coverage'] == 0
    assert review['best_guarantee'] == pytest.approx(0.1 ** (1 / 40))
    assert 'too small to guarantee 95% precision at 90% confidence' in review['warnings'][0]
    assert f"{review['best_guarantee']:.1%}" in review['warnings'][0]
    assert review['confidence'] == 0.9
    # 60 images, all right: 95 % holds, and the record says how sure
    scores = rng.dirichlet([8, 1, 1], 60)
    review = choose_thresholds(scores, scores.argmax(1), ['a', 'b', 'c'])
    assert review['coverage'] == 1 and review['guaranteed_precision'] == pytest.approx(
        0.1 ** (1 / 60))
    line = review_summary(review)
    assert 'at 90% confidence' in line and 'guaranteed 96.2%' in line
    assert review['coverage_low'] == pytest.approx(0.1 ** (1 / 60))


def test_records_of_earlier_versions_read_as_point_estimates():
    review = dict(target_precision=0.95, global_threshold=0.8, coverage=0.5, precision=0.96,
                  classes=dict(a=dict(threshold=0.8, source='global', val_images=10)))
    line = review_summary(review)
    assert 'on val (point estimates)' in line and 'guaranteed' not in line
