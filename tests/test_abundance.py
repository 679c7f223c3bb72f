"""How many of each: the quantification methods against hand-computed estimates, EM against
known priors, the abundance table (groups, unknown and unreadable images counted apart), bad
input, and on a tiny trained model whose classes overlap, the default method against
classify-and-count over seeded samples whose mix is not the training set's."""
import json
import os
import os.path as osp
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq

from bioplugin.apis import BioClassifier, load_config
from bioplugin.datasets.folder_layout import scan_images
from bioplugin.errors import CheckpointError, DatasetError
from bioplugin.evaluation.abundance import (UNKNOWN_ROW, UNREADABLE_ROW, abundance_table,
                                            adapt_to_groups, read_group_file, val_reference)
from bioplugin.evaluation.quantification import (DEFAULT_METHOD, METHODS, adapt_posteriors,
                                                 em_priors, project_to_simplex, quantify)
from helpers import TINY_CONFIG, run_tool, tool_main

# ---------------------------------------------------------------- the methods, by hand

VAL = np.array([[.8, .2], [.6, .4], [.3, .7],   # true class 0: predicted 0, 0, 1
                [.4, .6], [.1, .9]])            # true class 1: predicted 1, 1
VAL_LABELS = np.array([0, 0, 0, 1, 1])
SAMPLE = np.array([[.9, .1], [.7, .3], [.2, .8], [.45, .55]])


def test_each_method_gives_the_hand_computed_estimate():
    def estimate(method):
        return quantify(SAMPLE, VAL, VAL_LABELS, method, bootstrap=0)['proportions']

    # cc: predictions 0, 0, 1, 1
    np.testing.assert_allclose(estimate('cc'), [.5, .5])
    # pcc: the mean posterior
    np.testing.assert_allclose(estimate('pcc'), [2.25 / 4, 1.75 / 4])
    # acc: P(pred 0 | 0) = 2/3, P(pred 0 | 1) = 0; 2/3 p0 = 1/2
    np.testing.assert_allclose(estimate('acc'), [.75, .25])
    # pacc: E[p0 | 0] = 1.7/3, E[p0 | 1] = .25; 1.7/3 p0 + .25 (1 - p0) = .5625
    p0 = (.5625 - .25) / (1.7 / 3 - .25)
    np.testing.assert_allclose(estimate('pacc'), [p0, 1 - p0])
    # em: the fixed point q = mean of the posteriors reweighted by q / s, s = (3/5, 2/5),
    # found here by a root finder
    s0 = 3 / 5

    def gap(q0):
        weighted = SAMPLE[:, 0] * q0 / s0
        return np.mean(weighted / (weighted + SAMPLE[:, 1] * (1 - q0) / (1 - s0))) - q0

    q0 = brentq(gap, 1e-3, 1 - 1e-3, xtol=1e-12)
    np.testing.assert_allclose(estimate('em'), [q0, 1 - q0], atol=1e-5)


def calibrated_sample(rng, counts, separation=1.6, classes=4):
    """Images of Gaussian classes (unit spread, means ``separation`` apart on each axis)
    with their exact posteriors under equal priors, and their labels."""
    means = np.eye(classes) * separation
    labels = np.repeat(np.arange(classes), counts)
    points = means[labels] + rng.normal(size=(len(labels), classes))
    log_likelihood = -((points[:, None, :] - means[None]) ** 2).sum(2) / 2
    posteriors = np.exp(log_likelihood - log_likelihood.max(1, keepdims=True))
    return posteriors / posteriors.sum(1, keepdims=True), labels


def test_em_recovers_known_shifted_priors():
    rng = np.random.default_rng(0)
    shifted = np.array([.6, .25, .1, .05])
    posteriors, _ = calibrated_sample(rng, (shifted * 5000).astype(int))
    priors, iterations = em_priors(posteriors, np.full(4, .25))
    assert np.abs(priors[0] - shifted).max() <= 0.02
    # counting the labels is far off on the same images
    counted = np.bincount(posteriors.argmax(1), minlength=4) / len(posteriors)
    assert np.abs(counted - shifted).max() > 0.05
    assert iterations < 1000


def test_adapted_posteriors_follow_bayes_rule():
    posteriors = np.array([[.5, .3, .2], [np.nan] * 3])
    adapted = adapt_posteriors(posteriors, [.2, .2, .6], [.5, .25, .25])
    expected = np.array([.5 * .4, .3 * .8, .2 * 2.4])
    np.testing.assert_allclose(adapted[0], expected / expected.sum())
    assert np.isnan(adapted[1]).all()


def test_projection_onto_the_simplex():
    projected = project_to_simplex(np.array([[1.2, -0.2, 0.0], [.2, .3, .5], [.5, .5, .5]]))
    np.testing.assert_allclose(projected, [[1, 0, 0], [.2, .3, .5], [1 / 3] * 3])


def test_singular_rates_and_estimates_off_the_simplex_are_said():
    # two classes that val cannot tell apart: the same posteriors for both
    val = np.array([[.5, .5, 0], [.5, .5, 0], [0, 0, 1], [0, .1, .9]])
    result = quantify(np.array([[.6, .4, 0], [0, 0, 1]]), val, [0, 1, 2, 2], 'pacc',
                      bootstrap=20)
    assert any('singular' in warning for warning in result['warnings'])
    assert result['proportions'].min() >= 0 and result['proportions'].sum() == pytest.approx(1)
    # fewer predicted 0s than val's confusions explain: acc wants a negative share
    val = np.array([[.9, .1]] * 6 + [[.1, .9]] * 4 + [[.6, .4]] * 4)
    result = quantify(np.array([[.2, .8]] * 10), val, [0] * 6 + [1] * 8, 'acc',
                      bootstrap=20)
    assert any('projected onto it' in warning for warning in result['warnings'])
    np.testing.assert_allclose(result['proportions'], [0, 1])


def test_a_class_without_val_images_falls_back_to_pcc():
    sample = np.array([[.7, .2, .1], [.1, .8, .1]])
    result = quantify(sample, np.array([[.8, .1, .1], [.1, .8, .1]]), [0, 1], 'acc', bootstrap=20, class_names=['a', 'b', 'c'])
    assert result['method'] == 'pcc'
    assert "no val image ('c')" in result['warnings'][0]
    np.testing.assert_allclose(result['proportions'], sample.mean(0))


def test_a_small_val_split_widens_the_intervals():
    rng = np.random.default_rng(1)
    sample, _ = calibrated_sample(rng, (60, 30, 20, 10))
    val, labels = calibrated_sample(rng, (3, 3, 3, 3))
    narrow = quantify(sample, val, labels, 'pacc', bootstrap=200, seed=3)
    assert any('fewer than 20' in warning for warning in narrow['warnings'])
    plain = quantify(sample, val, labels, 'pcc', bootstrap=200, seed=3)
    assert not plain['warnings']  # pcc needs no val rates
    assert (narrow['ci_high'] - narrow['ci_low']).mean() > (plain['ci_high']
                                                           - plain['ci_low']).mean()
    assert np.all(narrow['ci_low'] <= narrow['proportions'])
    assert np.all(narrow['proportions'] <= narrow['ci_high'])


def test_intervals_cover_the_truth_on_calibrated_samples():
    """Over 20 seeded samples of 400 images (40 val images per class) the 95 % intervals of
    the default method hold the true proportions for at least 80 % of the classes."""
    covered, error, counted = [], [], []
    truth = np.array([.55, .25, .15, .05])
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        sample, labels = calibrated_sample(rng, (truth * 400).astype(int))
        val, val_labels = calibrated_sample(rng, (40, 40, 40, 40))
        result = quantify(sample, val, val_labels, bootstrap=300, seed=seed)
        covered.append((result['ci_low'] <= truth) & (truth <= result['ci_high']))
        error.append(np.abs(result['proportions'] - truth).mean())
        counted.append(np.abs(np.bincount(sample.argmax(1), minlength=4) / 400 - truth).mean())
    assert np.mean(covered) >= 0.8
    assert np.mean(error) <= 0.7 * np.mean(counted)


# ---------------------------------------------------------------- the table

def test_grouped_counts_add_up_and_unknown_and_unreadable_are_apart():
    rng = np.random.default_rng(2)
    scores, _ = calibrated_sample(rng, (40, 30, 20, 10))
    scores[[3, 50]] = np.nan  # unreadable
    unknown = np.zeros(len(scores), bool)
    unknown[[5, 6, 60]] = True
    groups = ['trap A'] * 45 + ['trap B'] * 55
    val, labels = calibrated_sample(rng, (25, 25, 25, 25))
    table = abundance_table(scores, unknown, dict(posteriors=val, labels=labels),
                            ['a', 'b', 'c', 'NA'], groups, bootstrap=50)
    assert list(table.columns) == ['group', 'class', 'count', 'proportion', 'ci_low',
                                   'ci_high']
    for group, size, bad, strange in (('trap A', 45, 1, 2), ('trap B', 55, 1, 1)):
        rows = table[table.group == group].set_index('class')
        assert rows['count'].sum() == size
        assert rows.loc[UNREADABLE_ROW, 'count'] == bad
        assert rows.loc[UNKNOWN_ROW, 'count'] == strange
        assert rows.loc[[UNKNOWN_ROW, UNREADABLE_ROW], 'proportion'].isna().all()
        classes = rows.drop(index=[UNKNOWN_ROW, UNREADABLE_ROW])
        assert classes['proportion'].sum() == pytest.approx(1)
        assert classes['count'].sum() == size - bad - strange
        assert (classes.ci_low <= classes.proportion).all()
    every = abundance_table(scores, unknown, dict(posteriors=val, labels=labels),
                            ['a', 'b', 'c', 'NA'], method='all', bootstrap=10)
    assert list(every.columns[:2]) == ['method', 'class']
    assert list(dict.fromkeys(every.method)) == list(METHODS)
    with pytest.raises(DatasetError, match='None of the 2 images'):
        abundance_table(np.full((2, 4), np.nan), None, dict(posteriors=val, labels=labels),
                        ['a', 'b', 'c', 'd'])


def test_group_files_that_miss_or_add_images(tmp_path):
    images = ['/x/a.jpg', '/x/b.png', '/x/c.jpg']
    path = tmp_path / 'groups.csv'
    path.write_text('image,group\na.jpg,st1\nb,st2\nc.jpg,st1\nzzz.jpg,st3\n')
    groups, warnings = read_group_file(str(path), images)
    assert groups == ['st1', 'st2', 'st1'] and "'zzz.jpg'" in warnings[0]
    path.write_text('image,group\na.jpg,st1\n')
    with pytest.raises(DatasetError, match=r"no group for 2 of the 3 images.*'b.png'"):
        read_group_file(str(path), images)
    path.write_text('name,station\na.jpg,st1\n')
    with pytest.raises(DatasetError, match='needs the columns image,group'):
        read_group_file(str(path), images)


def test_adapting_to_groups_estimates_each_groups_priors():
    rng = np.random.default_rng(4)
    first, _ = calibrated_sample(rng, (900, 60, 30, 10))
    second, _ = calibrated_sample(rng, (10, 30, 60, 900))
    scores = np.concatenate([first, second])
    counted = np.ones(len(scores), bool)
    adapted, record = adapt_to_groups(scores, counted, np.full(4, .25), list('abcd'),
                                      ['one'] * 1000 + ['two'] * 1000)
    assert record['groups']['one']['priors']['a'] > 0.8
    assert record['groups']['two']['priors']['d'] > 0.8
    np.testing.assert_allclose(adapted.sum(1), 1)
    # a doubtful image leans to the class its sample is full of
    assert adapted[:1000, 0].mean() > scores[:1000, 0].mean()
    assert adapted[1000:, 3].mean() > scores[1000:, 3].mean()


# ---------------------------------------------------------------- a tiny trained model

CENTRES = (80, 128, 176)  # grey levels of the three classes


def write_grey(path: str, label: int, rng, spread: float = 28) -> None:
    """An image of class ``label``: a grey level drawn around its class's centre, so that
    neighbouring classes overlap and the model confuses some."""
    level = CENTRES[label] + rng.normal(0, spread)
    image = np.clip(level + rng.normal(0, 12, (40, 48, 3)), 0, 255).astype(np.uint8)
    os.makedirs(osp.dirname(path), exist_ok=True)
    assert cv2.imwrite(path, image)


SMALL_PIPELINES = '''
train_pipeline = [
    dict(type='BioLoadImage', decode=False),
    dict(type='BioRandomResizedAffine', scale=48, crop_ratio_range=(0.7, 1.0), flip_prob=0.5,
         max_rotate_degree=20, max_translate_ratio=0.1, scaling_ratio_range=(0.9, 1.1)),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='BioLoadImage'),
    dict(type='ResizeEdge', scale=56, edge='short'),
    dict(type='CenterCrop', crop_size=48),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=16, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=32, dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(batch_size=32, dataset=dict(pipeline=test_pipeline))
'''


@pytest.fixture(scope='module')
def overlapping(tmp_path_factory):
    """The tiny model at 48 px, trained 8 epochs on three overlapping grey classes (40
    train and 40 val images each, balanced; about 70 % val top-1) and calibrated when
    training ended; a pool of 150 more images per class to draw samples from."""
    tmp = tmp_path_factory.mktemp('abundance')
    config = tmp / 'tiny48.py'
    config.write_text(f'_base_ = [{TINY_CONFIG!r}]\n' + SMALL_PIPELINES)
    data, rng = tmp / 'data', np.random.default_rng(0)
    for split, count in (('train', 40), ('val', 40), ('pool', 150)):
        for label in range(3):
            for i in range(count):
                write_grey(str(data / split / str(label) / f'{split}_{label}_{i:03d}.png'),
                           label, rng)
    os.makedirs(data / 'test')
    work_dir = tmp / 'work'
    result = run_tool('tools/train.py', str(config), '--data-root', str(data), '--work-dir',
                      str(work_dir), '--cfg-options', 'train_cfg.max_epochs=8',
                      # the model of the measurement in docs/abundance.md (val top-1 76.5 %):
                      # its Kaiming-initialised logit layer leaves the confusions that the
                      # adjusted methods correct and counting does not
                      'model.head.classifier_std=None')
    assert result.returncode == 0, result.stderr[-2000:]
    best = str(sorted(work_dir.glob('best_*.pth'))[-1])
    classifier = BioClassifier(load_config(str(config), data_root=str(data)), best)
    pool = scan_images(str(data / 'pool'), recursive=True)
    return dict(config=str(config), data=str(data), best=best, classifier=classifier,
                pool=pool, labels=np.array([int(osp.basename(osp.dirname(p))) for p in pool]),
                tmp=tmp)


@pytest.mark.slow
def test_the_default_method_beats_counting_under_a_shifted_mix(overlapping):
    """20 seeded samples of 200 pool images in a 70/20/10 mix (training was balanced): the
    default method's mean absolute error of the proportions is at most 0.7x classify and
    count's, and its 95 % intervals hold the true proportions for 80 % of the classes. The
    pool goes through BioClassifier's one prediction path once; samples are drawn from it."""
    classifier = overlapping['classifier']
    outputs, _ = classifier.outputs(overlapping['pool'])
    post = classifier.post_processor()
    scores = post.scores(outputs['logits'])
    unknown = post.unknown_scores(outputs['logits'], outputs['features'])
    known = unknown <= post.unknown_threshold
    labels = overlapping['labels']
    val = val_reference(classifier.facts.val_set(), post.scores)
    errors, covered = {'cc': [], DEFAULT_METHOD: []}, []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        pick = np.concatenate([rng.choice(np.flatnonzero(labels == label), count, replace=False)
                               for label, count in enumerate((140, 40, 20))])
        pick = pick[known[pick]]  # what the abundance counts: images not flagged unknown
        truth = np.bincount(labels[pick], minlength=3) / len(pick)
        for method in errors:
            result = quantify(scores[pick], val['posteriors'], val['labels'], method,
                              bootstrap=500, seed=seed)
            errors[method].append(np.abs(result['proportions'] - truth).mean())
        covered.append((result['ci_low'] <= truth) & (truth <= result['ci_high']))
    assert (scores.argmax(1) != labels).mean() > 0.1  # the model does confuse the classes
    assert np.mean(errors[DEFAULT_METHOD]) <= 0.7 * np.mean(errors['cc'])
    assert np.mean(covered) >= 0.8


def sample_folder(overlapping, tmp_path, seed: int = 0) -> tuple:
    """A folder of 60 pool images (two stations, 30 each) plus one unreadable file, and
    its group file."""
    rng = np.random.default_rng(seed)
    folder = tmp_path / 'sample'
    os.makedirs(folder)
    rows = ['image,group']
    for i, index in enumerate(rng.choice(len(overlapping['pool']), 60, replace=False)):
        name = f'img_{i:02d}.png'
        shutil.copy(overlapping['pool'][index], folder / name)
        rows.append(f"{name},{'north' if i < 30 else 'south'}")
    (folder / 'broken.jpg').write_bytes(b'not an image')
    rows.append('broken.jpg,south')
    groups = tmp_path / 'groups.csv'
    groups.write_text('\n'.join(rows) + '\n')
    return str(folder), str(groups)


@pytest.mark.slow
def test_abundance_tool_writes_the_table_and_figure(overlapping, tmp_path):
    folder, groups = sample_folder(overlapping, tmp_path)
    out = tmp_path / 'abundance.csv'
    status, stdout, stderr = tool_main(
        'analysis/abundance.py', overlapping['config'], overlapping['best'], '--images', folder,
        '--group-file', groups, '--out', out, '--bootstrap', '200', '--data-root',
        overlapping['data'])
    assert status == 0, stderr
    table = pd.read_csv(out, dtype={'class': str, 'group': str}, keep_default_na=False)
    assert list(table.columns) == ['group', 'class', 'count', 'proportion', 'ci_low',
                                   'ci_high']
    assert table.groupby('group')['count'].sum().to_dict() == {'north': 30, 'south': 31}
    apart = table[table['class'].isin([UNKNOWN_ROW, UNREADABLE_ROW])]
    assert (apart.proportion == '').all()
    assert table.set_index(['group', 'class']).loc[('south', UNREADABLE_ROW), 'count'] == 1
    assert osp.isfile(tmp_path / 'abundance.png') and 'Figure:' in stdout
    # the Python API gives the same table
    api = overlapping['classifier'].abundance(folder, groups=groups, bootstrap=200)
    np.testing.assert_allclose(table[table.proportion != ''].proportion.astype(float),
                               api.proportion.dropna(), atol=1e-6)
    # every method side by side
    status, _, stderr = tool_main(
        'analysis/abundance.py', overlapping['config'], overlapping['best'], '--images', folder,
        '--method', 'all', '--out', tmp_path / 'all.csv', '--bootstrap', '20')
    assert status == 0, stderr
    every = pd.read_csv(tmp_path / 'all.csv', keep_default_na=False)
    assert list(dict.fromkeys(every.method)) == list(METHODS)


@pytest.mark.slow
def test_abundance_bad_input(overlapping, tmp_path):
    folder, groups = sample_folder(overlapping, tmp_path)
    args = ('analysis/abundance.py', overlapping['config'], overlapping['best'])
    # a group file that misses an image: one error line
    with open(groups) as file:
        lines = file.read().splitlines()
    (tmp_path / 'short.csv').write_text('\n'.join(lines[:-2]) + '\n')
    status, _, stderr = tool_main(*args, '--images', folder, '--group-file',
                                  tmp_path / 'short.csv', '--out', tmp_path / 'a.csv')
    assert status == 2 and stderr.startswith('error: ') and 'Traceback' not in stderr
    assert 'gives no group for 2' in stderr
    # a folder of nothing readable
    empty = tmp_path / 'unreadable'
    os.makedirs(empty)
    (empty / 'x.jpg').write_bytes(b'broken')
    status, _, stderr = tool_main(*args, '--images', empty, '--out', tmp_path / 'b.csv')
    assert status == 2 and 'None of the 1 images could be read' in stderr
    # a checkpoint calibrated by an earlier version: no val posteriors beside it
    old = copy_without_val_set(overlapping, tmp_path)
    status, _, stderr = tool_main(*args[:2], old, '--images', folder, '--out',
                                  tmp_path / 'c.csv')
    assert status == 2 and 'run tools/analysis/calibrate.py' in stderr
    assert stderr.count('\n') == 1


@pytest.mark.slow
def test_adapt_priors_in_the_csv_and_the_python_api(overlapping, tmp_path):
    folder, groups = sample_folder(overlapping, tmp_path)
    csv = tmp_path / 'prediction.csv'
    status, stdout, stderr = tool_main(
        'test.py', overlapping['config'], overlapping['best'], '--csv', csv, '--data-root',
        overlapping['data'], '--cfg-options', f'test_dataloader.dataset.data_prefix={folder}',
        '--work-dir', tmp_path, '--adapt-priors', '--group-file', groups, '--topk', '3')
    assert status == 0, stderr
    frame = pd.read_csv(csv, dtype={'pred_label': str}, keep_default_na=False)
    priors = json.loads((tmp_path / 'prediction.priors.json').read_text())
    assert set(priors['groups']) == {'north', 'south'}
    assert priors['groups']['south'] == dict(priors['groups']['south'], images=31)
    assert sum(priors['groups']['north']['priors'].values()) == pytest.approx(1)
    readable = frame[frame.status == 'ok']
    total = readable[['score', 'top2_score', 'top3_score']].astype(float).sum(1)
    np.testing.assert_allclose(total, 1, atol=3e-6)
    classifier = overlapping['classifier']
    table = classifier.predict(folder, topk=3, adapt_priors=True, groups=groups)
    assert table.attrs['priors']['groups'].keys() == priors['groups'].keys()
    np.testing.assert_allclose(readable.score.astype(float),
                               table[table.status == 'ok'].score, atol=1e-6)
    plain = classifier.predict(folder, topk=3)
    assert not np.allclose(plain.score.dropna(), table.score.dropna())
    status, _, stderr = tool_main('test.py', overlapping['config'], overlapping['best'],
                                  '--csv', csv, '--group-file', groups)
    assert status == 2 and '--group-file goes with --adapt-priors' in stderr
    with pytest.raises(CheckpointError, match='no val posteriors'):
        BioClassifier(load_config(overlapping['config'], data_root=overlapping['data']),
                      copy_without_val_set(overlapping, tmp_path)).predict(
                          folder, adapt_priors=True)


def copy_without_val_set(overlapping, tmp_path) -> str:
    old = tmp_path / 'old.pth'
    shutil.copy(overlapping['best'], old)
    shutil.copy(overlapping['best'][:-4] + '.calibration.json', tmp_path / 'old.calibration.json')
    return str(old)


@pytest.mark.slow
def test_report_shows_the_rates_and_the_sample(overlapping, tmp_path):
    from bioplugin.analysis import write_report
    folder, _ = sample_folder(overlapping, tmp_path)
    out = tmp_path / 'report'
    page = open(write_report(str(osp.dirname(overlapping['best'])), out_dir=str(out),
                             gradcam_images=1, gallery_images=1,
                             abundance_images=folder)).read()
    assert 'How many of each?' in page and 'misclassification_rates.png' in page
    rates = pd.read_csv(out / 'misclassification_rates.csv', index_col=0)
    np.testing.assert_allclose(rates.sum(1), 1, atol=1e-6)  # each true class's mean score
    assert (out / 'abundance.png').is_file() and UNREADABLE_ROW in page
    table = pd.read_csv(out / 'abundance.csv', keep_default_na=False)
    assert table['count'].sum() == 61


@pytest.mark.slow
def test_an_exported_model_estimates_the_same_abundance(overlapping, tmp_path):
    """The fp32 ONNX export gets the checkpoint's val posteriors beside it, and its
    abundance table is the checkpoint's (float32)."""
    folder, _ = sample_folder(overlapping, tmp_path)
    status, stdout, stderr = tool_main(
        'deploy/export_onnx.py', overlapping['config'], overlapping['best'], '--out',
        tmp_path / 'tiny.onnx', '--data-root', overlapping['data'], '--work-dir', tmp_path)
    assert status == 0, stderr
    assert osp.isfile(tmp_path / 'tiny.val_posteriors.npz') and 'Val posteriors' in stdout
    config = load_config(overlapping['config'], data_root=overlapping['data'])
    exported = BioClassifier(config, str(tmp_path / 'tiny.onnx'))
    checkpoint = BioClassifier(config, overlapping['best'], precision='fp32')
    onnx_table = exported.abundance(folder, bootstrap=100)
    torch_table = checkpoint.abundance(folder, bootstrap=100)
    assert list(onnx_table['count']) == list(torch_table['count'])
    np.testing.assert_allclose(onnx_table.proportion.dropna(),
                               torch_table.proportion.dropna(), atol=1e-4)
