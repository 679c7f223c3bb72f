"""Temperature scaling: the fit, the honest (cross-fitted) estimate, where the temperature is
stored and that every prediction path applies it."""
import importlib
import json
import os.path as osp

import numpy as np
import pandas as pd
import pytest

from bioplugin.apis import (BioClassifier, CheckpointEvaluator, build_runner, evaluate,
                            format_calibration, load_config, work_dir_config)
from bioplugin.errors import ConfigError
from bioplugin.evaluation import PredictionWriter
from bioplugin.evaluation.model_facts import read_calibration
from bioplugin.evaluation.temperature_scaling import (calibrate, calibrated_scores,
                                                      calibration_metrics, fit_temperature)
from bioplugin.evaluation.review import choose_thresholds, decisions, review_queue
from helpers import TINY_CONFIG, make_image_folder, run_tool, tool_main

evaluate_module = importlib.import_module('bioplugin.apis.evaluate')  # not the function


def softmax(logits):
    exp = np.exp(logits - logits.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)


def overconfident(n=20000, classes=5, true_temperature=2.0, seed=0):
    """Logits z of a model whose labels really follow softmax(z / T)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 3, (n, classes))
    truth = softmax(logits / true_temperature)
    labels = np.array([rng.choice(classes, p=p) for p in truth])
    return logits, labels


def test_fit_recovers_a_known_temperature():
    logits, labels = overconfident(true_temperature=2.0)
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.05)
    logits, labels = overconfident(true_temperature=0.5, seed=1)  # underconfident
    assert fit_temperature(logits, labels) == pytest.approx(0.5, rel=0.05)


def test_cross_fitted_estimate_improves_an_overconfident_model():
    logits, labels = overconfident(n=4000)
    record = calibrate(logits, labels, num_classes=5)
    assert record['after']['ece'] < record['before']['ece'] / 2
    assert record['after']['nll'] < record['before']['nll']
    assert record['after']['brier'] < record['before']['brier']
    assert len(record['fold_temperatures']) == 2 and not record['warnings']
    # the ranking never changes, so neither does top-1
    calibrated = calibrated_scores(logits, record['temperature'])
    assert (calibrated.argmax(1) == logits.argmax(1)).all()
    np.testing.assert_allclose(calibrated.sum(1), 1, atol=1e-9)


def test_calibration_metrics_by_hand():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    labels = [0, 1, 1]
    metrics = calibration_metrics(np.log(scores), labels)  # log p: logits of softmax p
    # bins: 0.9 (right), 0.8 (wrong), 0.7 (right): |0.9-1| + |0.8-0| + |0.7-1|, over 3
    assert metrics['ece'] == pytest.approx((0.1 + 0.8 + 0.3) / 3)
    assert metrics['nll'] == pytest.approx(-np.log([0.9, 0.2, 0.7]).mean())
    assert metrics['brier'] == pytest.approx((0.02 + 1.28 + 0.18) / 3)
    assert metrics['accuracy'] == pytest.approx(2 / 3)


def test_small_val_split_keeps_temperature_one_with_a_warning():
    logits, labels = overconfident(n=12)
    record = calibrate(logits, labels, num_classes=5)
    assert record['temperature'] == 1.0 and 'too few to fit' in record['warnings'][0]
    assert 'calibrated' not in format_calibration(record)
    logits, labels = overconfident(n=400, classes=5)
    keep = labels != 4
    record = calibrate(logits[keep], labels[keep], num_classes=5)
    assert record['temperature'] != 1.0
    assert any('have no val image' in warning for warning in record['warnings'])


def test_writer_refuses_a_bad_temperature():
    with pytest.raises(ConfigError, match='positive number'):
        PredictionWriter(temperature=-1)
    with pytest.raises(ConfigError, match="'auto'"):
        PredictionWriter(temperature='hot')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A tiny model trained on 24 val images' worth of data; training ends by calibrating."""
    tmp = tmp_path_factory.mktemp('calibration')
    data = make_image_folder(str(tmp / 'data'), ['0', '1', '2'], per_class=8, val_per_class=8,
                             test_images=6)
    work_dir = tmp / 'work'
    result = run_tool('tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir',
                      str(work_dir), '--cfg-options', 'train_cfg.max_epochs=4')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Score calibration: temperature' in result.stdout
    best = sorted(work_dir.glob('best_*.pth'))[-1]
    return data, work_dir, str(best)


@pytest.mark.slow
def test_evaluations_keep_the_training_config_in_the_work_dir(trained):
    """The end-of-training calibration evaluates val and train; the work dir keeps the config
    it was trained with (tools read it back), each evaluation's config is beside its log."""
    _, work_dir, best = trained
    saved = load_config(work_dir_config(str(work_dir)))
    assert osp.basename(saved.filename) == osp.basename(TINY_CONFIG)
    assert saved.load_from is None
    assert saved.test_dataloader.dataset.data_prefix == 'test'
    assert saved.test_evaluator.out_file == 'prediction.csv'
    assert 'split' not in saved.test_evaluator  # what an evaluation's config adds
    evaluation_configs = [load_config(str(path))
                          for path in work_dir.glob(f'2*/{osp.basename(TINY_CONFIG)}')]
    assert best in [cfg.load_from for cfg in evaluation_configs]


@pytest.mark.slow
def test_one_runner_evaluates_several_splits_as_separate_runs_do(trained, tmp_path,
                                                                 monkeypatch):
    data, _, best = trained
    cfg = load_config(TINY_CONFIG, data_root=data, work_dir=str(tmp_path))
    for split in ('train_dataloader', 'val_dataloader'):  # resolved for every split
        cfg[split].update(num_workers='auto', persistent_workers=True)
    options = dict(raw_scores=True, unknown=False, out_dir=str(tmp_path))
    separate = {split: evaluate(cfg, best, split, **options) for split in ('val', 'train')}
    builds = []
    monkeypatch.setattr(evaluate_module, 'build_runner',
                        lambda test_cfg: builds.append(test_cfg) or build_runner(test_cfg))
    evaluations = CheckpointEvaluator(cfg, best, **options)
    together = {split: evaluations(split) for split in ('val', 'train')}
    assert len(builds) == 1
    for split in ('val', 'train'):
        np.testing.assert_allclose(together[split]['scores'], separate[split]['scores'],
                                   atol=1e-6)
        np.testing.assert_array_equal(together[split]['gt_labels'],
                                      separate[split]['gt_labels'])
        assert together[split]['metrics'] == pytest.approx(separate[split]['metrics'])
        assert list(together[split]['predictions'].image_name) == list(
            separate[split]['predictions'].image_name)
        assert osp.isfile(together[split]['predictions_file'])
        assert together[split]['predictions_file'].endswith(f'predictions_{split}.csv')
    assert len(together['train']['predictions']) == 24 and len(
        together['val']['predictions']) == 24


@pytest.mark.slow
def test_training_stores_a_temperature_that_every_path_applies(trained, tmp_path):
    data, work_dir, best = trained
    stored = json.loads(open(best[:-4] + '.calibration.json').read())
    temperature = read_calibration(best)['temperature']
    assert temperature == stored['temperature'] and temperature != 1.0
    assert stored['after']['ece'] <= stored['before']['ece']  # cross-fitted, never worse here
    assert osp.isfile(work_dir / 'calibration' / 'reliability.png')

    csv = {}
    for name, extra in (('calibrated', []), ('raw', ['--raw-scores'])):
        status, stdout, stderr = tool_main('test.py', TINY_CONFIG, best, '--csv',
                                           tmp_path / f'{name}.csv', '--data-root', data,
                                           '--work-dir', tmp_path, '--topk', '3', '--fp32',
                                           *extra)
        assert status == 0, stderr
        assert ('calibrated with temperature' in stdout) == (not extra)
        csv[name] = pd.read_csv(tmp_path / f'{name}.csv', dtype={'pred_label': str})
    raw, calibrated = csv['raw'], csv['calibrated']
    assert list(raw.pred_label) == list(calibrated.pred_label)
    assert not np.allclose(raw.score, calibrated.score)
    # the calibrated top-3 scores are those of softmax(log p / T) over all classes
    raw_scores = BioClassifier(load_config(TINY_CONFIG, data_root=data), best,
                               raw_scores=True, precision='fp32').predict_scores(
        [osp.join(data, 'test', f'{name}.jpg') for name in raw.image_name])
    expected = np.sort(softmax(np.log(raw_scores) / temperature), axis=1)[:, ::-1]
    np.testing.assert_allclose(calibrated[['score', 'top2_score', 'top3_score']],
                               expected[:, :3], atol=1e-5)
    classifier = BioClassifier(load_config(TINY_CONFIG, data_root=data), best,
                               precision='fp32')
    assert classifier.temperature == temperature
    np.testing.assert_allclose(classifier.predict(osp.join(data, 'test')).score,
                               calibrated.score, atol=1e-5)


@pytest.mark.slow
def test_export_carries_the_temperature(trained, tmp_path):
    data, _, best = trained
    status, _, stderr = tool_main('deploy/export_onnx.py', TINY_CONFIG, best, '--out',
                                  tmp_path / 'm.onnx', '--data-root', data, '--work-dir',
                                  tmp_path)
    assert status == 0, stderr
    cfg = load_config(TINY_CONFIG, data_root=data)
    from_onnx = BioClassifier(cfg, str(tmp_path / 'm.onnx'))
    assert from_onnx.temperature == pytest.approx(read_calibration(best)['temperature'])
    images = osp.join(data, 'test')
    np.testing.assert_allclose(
        from_onnx.predict(images).score,
        BioClassifier(cfg, best, precision='fp32').predict(images).score, atol=1e-4)
    raw = BioClassifier(cfg, str(tmp_path / 'm.onnx'), raw_scores=True).predict(images)
    np.testing.assert_allclose(
        raw.score, BioClassifier(cfg, best, raw_scores=True, precision='fp32').predict(
            images).score, atol=1e-4)


@pytest.mark.slow
def test_calibrate_tool_on_a_work_dir(trained, tmp_path):
    _, work_dir, best = trained
    status, stdout, stderr = tool_main('analysis/calibrate.py', str(work_dir), '--out-dir',
                                       tmp_path)
    assert status == 0, stderr
    assert 'model scores' in stdout and 'calibrated*' in stdout and best[:-4] in stdout
    assert osp.isfile(tmp_path / 'reliability.png')
    status, _, stderr = tool_main('analysis/calibrate.py', str(work_dir), '--folds', '1')
    assert status == 2 and '--folds' in stderr


# ---------------------------------------------------------------- review queue

def precision_at(top, correct, threshold):
    accepted = top >= threshold
    return correct[accepted].mean() if accepted.any() else None


def test_thresholds_reach_the_target_precision_on_val():
    logits, labels = overconfident(n=600, classes=3, seed=3)
    scores = calibrated_scores(logits, 2.0)
    review = choose_thresholds(scores, labels, ['a', 'b', 'c'], target=0.9,
                               min_class_images=150, confidence=None)  # point estimates
    top, predicted = scores.max(1), scores.argmax(1)
    correct = predicted == labels
    for index, name in enumerate('abc'):
        entry = review['classes'][name]
        mine = predicted == index
        assert entry['val_images'] == mine.sum()
        assert entry['source'] == ('class' if mine.sum() >= 150 else 'global')
        pool = mine if entry['source'] == 'class' else np.ones_like(mine)
        assert precision_at(top[pool], correct[pool], entry['threshold']) >= 0.9
        # any lower cut (at a val score) falls below the target: the threshold is the lowest
        lower = np.unique(top[pool][top[pool] < entry['threshold']])
        assert all(precision_at(top[pool], correct[pool], t) < 0.9 for t in lower)
    accepted = top >= np.array([review['classes']['abc'[i]]['threshold'] for i in predicted])
    assert review['coverage'] == pytest.approx(accepted.mean())
    assert review['precision'] >= 0.9 - 1e-9 and 0 < review['coverage'] < 1


def test_unreachable_precision_reviews_everything():
    scores = np.array([[0.6, 0.4], [0.7, 0.3], [0.4, 0.6]])
    review = choose_thresholds(scores, [1, 1, 0], ['a', 'b'], target=0.95)
    assert review['global_threshold'] == float('inf') and review['coverage'] == 0
    assert 'every prediction is sent to review' in review['warnings'][0]
    frame = pd.DataFrame(dict(pred_label=['a', 'b'], score=[0.99, 0.6]))
    assert list(decisions(frame, review)) == ['review', 'review']


def test_decisions_follow_the_thresholds_and_review_unreadable_images():
    review = dict(global_threshold=0.5, classes=dict(a=dict(threshold=0.9),
                                                      b=dict(threshold=0.2)))
    frame = pd.DataFrame(dict(pred_label=['a', 'a', 'b', 'c', ''],
                              score=[0.95, 0.85, 0.3, 0.6, np.nan],
                              status=['ok', 'ok', 'ok', 'ok', 'unreadable: empty file']))
    assert list(decisions(frame, review)) == ['accept', 'review', 'accept', 'accept', 'review']
    frame['decision'] = decisions(frame, review)
    assert list(review_queue(frame).score.fillna(-1)) == [-1, 0.85]


@pytest.mark.slow
def test_csv_decision_and_review_csv_agree_with_the_stored_thresholds(trained, tmp_path):
    data, work_dir, best = trained
    path = best[:-4] + '.calibration.json'
    record = json.loads(open(path).read())
    assert record['review']['target_precision'] == 0.95  # chosen when training ended
    saved = open(path).read()
    try:
        # thresholds that split the test images: class 0 never, class 1 always, 2 at 0.5
        record['review'] = dict(record['review'], global_threshold=0.5, classes={
            '0': dict(threshold=float('inf'), source='class', val_images=8),
            '1': dict(threshold=0.0, source='class', val_images=8),
            '2': dict(threshold=0.5, source='global', val_images=8)})
        open(path, 'w').write(json.dumps(record))
        status, stdout, stderr = tool_main(
            'test.py', TINY_CONFIG, best, '--csv', tmp_path / 'p.csv', '--review-csv',
            tmp_path / 'review.csv', '--data-root', data, '--work-dir', tmp_path, '--fp32')
        assert status == 0, stderr
        frame = pd.read_csv(tmp_path / 'p.csv', dtype={'pred_label': str})
        assert list(frame.columns[:2]) == ['image_name', 'pred_label'] and len(frame) == 6
        limit = frame.pred_label.map({'0': np.inf, '1': 0.0, '2': 0.5})
        expected = np.where(frame.score >= limit, 'accept', 'review')
        assert list(frame.decision) == list(expected)
        queue = pd.read_csv(tmp_path / 'review.csv', dtype={'pred_label': str})
        assert list(queue.image_name) == list(
            frame[frame.decision == 'review'].sort_values('score').image_name)
        assert f'Wrote the {len(queue)} of 6 predictions to review' in stdout
        # the same decisions from the Python API; none on raw scores
        classifier = BioClassifier(load_config(TINY_CONFIG, data_root=data), best,
                                   precision='fp32')
        assert list(classifier.predict(osp.join(data, 'test')).decision) == list(expected)
        raw = BioClassifier(load_config(TINY_CONFIG, data_root=data), best, raw_scores=True)
        assert 'decision' not in raw.predict(osp.join(data, 'test'))
    finally:
        open(path, 'w').write(saved)


@pytest.mark.slow
def test_report_shows_the_calibration(trained, tmp_path):
    from bioplugin.analysis import write_report
    _, work_dir, best = trained
    page = open(write_report(str(work_dir), out_dir=str(tmp_path),
                             gradcam_images=2)).read()
    record = json.loads(open(best[:-4] + '.calibration.json').read())
    assert 'Score calibration' in page and f"Temperature {record['temperature']:.3f}" in page
    assert 'reliability.png' in page and osp.isfile(tmp_path / 'reliability.png')
    assert f"{record['review']['coverage']:.0%} of val images auto-accepted" in page
