""""Not one of my classes": the unknown score, its threshold, and every path that writes the
`unknown` column (tools/test.py, BioClassifier, an exported ONNX file)."""
import json
import os
import os.path as osp

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from bioplugin.analysis.unknown_detection import measure_open_set
from bioplugin.apis import BioClassifier, load_config
from bioplugin.errors import ConfigError
from bioplugin.evaluation.model_facts import read_calibration
from bioplugin.evaluation.post_processor import add_unknown_columns
from bioplugin.evaluation.unknown_score import (UnknownScore, fit_unknown_score, open_set_auroc,
                                                signals_of)
from bioplugin.evaluation.review import decisions
from helpers import TINY_CONFIG, make_image_folder, run_tool, tool_main, write_image

TWO_CLASSES = ('--cfg-options', 'model.head.num_classes=2')


def test_auroc_and_fpr_by_hand():
    assert open_set_auroc([0, 1, 2], [3, 4])['auroc'] == 1.0
    assert open_set_auroc([3, 4], [0, 1, 2])['auroc'] == 0.0
    assert open_set_auroc([1, 1], [1, 1])['auroc'] == 0.5  # ties count half
    # known 0..19: the cut is their 95 % quantile rounded up to a known score (19), as the
    # threshold is chosen;
    # unknown 10 and 18 pass as known, 30 does not
    result = open_set_auroc(np.arange(20), [10, 18, 30])
    assert result['fpr_at_95_tpr'] == pytest.approx(2 / 3)
    # known images below each unknown one, a tie counting half: 10.5, 18.5 and 20 of 20
    assert result['auroc'] == pytest.approx((10.5 + 18.5 + 20) / 60)


def test_knn_distance_and_energy_by_hand():
    bank = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    features = np.array([[2, 0], [-1, 0]], np.float32)
    logits = np.array([[0, 0], [np.log(3), 0]], np.float32)
    signals = signals_of(bank, logits, features, k=1)
    np.testing.assert_allclose(signals[:, 0], [-np.log(2), -np.log(4)], atol=1e-6)
    # nearest neighbour of (1, 0) is itself; of (-1, 0) the normalised (0, 1) at sqrt(2)
    np.testing.assert_allclose(signals[:, 1], [0, np.sqrt(2)], atol=1e-3)


def test_threshold_passes_the_known_rate_of_val():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(200, 16))
    logits, features = rng.normal(size=(60, 3)), rng.normal(size=(60, 16))
    record = fit_unknown_score(logits, features, bank, k=5, known_rate=0.95)
    scores = UnknownScore(torch.as_tensor(bank), 5, record['mean'], record['std'])(
        torch.as_tensor(logits), torch.as_tensor(features)).numpy()
    assert (scores <= record['threshold']).mean() >= 0.95
    assert record['val_known_rate'] == (scores <= record['threshold']).mean()


def test_too_few_val_images_give_a_warning_and_no_threshold():
    rng = np.random.default_rng(0)
    record = fit_unknown_score(rng.normal(size=(12, 3)), rng.normal(size=(12, 8)),
                          rng.normal(size=(30, 8)))
    assert record['threshold'] is None
    assert 'only 12 labeled val images' in record['warnings'][0]
    assert 'no `unknown` column' in record['warnings'][0]


def test_unknown_columns_label_and_decision():
    frame = pd.DataFrame(dict(image_name=['a', 'b', 'c'], pred_label=['0', '1', ''],
                              score=[0.99, 0.99, np.nan], status=['ok', 'ok', 'unreadable: x']))
    add_unknown_columns(frame, np.array([0.5, 3.0, np.nan]), threshold=2.0,
                        unknown_label='unknown')
    assert list(frame.unknown) == [False, True, False]
    assert list(frame.pred_label) == ['0', 'unknown', '']
    review = dict(classes={}, global_threshold=0.9)
    # a confident unknown image is reviewed, never accepted
    assert list(decisions(frame, review)) == ['accept', 'review', 'review']


# ---------------------------------------------------------------- a trained tiny model

def checkerboards(folder, count=16, seed=5):
    """Black-and-white checkerboards: a pattern unlike the one-colour training classes."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:44, :44]
    for i in range(count):
        cell = 6 + 2 * (i % 4)
        board = np.repeat(((y // cell + x // cell) % 2 * 255)[..., None], 3, 2)
        noisy = np.clip(board + rng.integers(-20, 20, board.shape), 0, 255).astype(np.uint8)
        assert cv2.imwrite(osp.join(folder, f'board_{i}.jpg'), noisy)
    return folder


@pytest.fixture(scope='module')
def open_set_run(tmp_path_factory):
    """A tiny model trained on two one-colour classes (80 val images); training ends by
    calibrating, which fits the unknown threshold. The test folder mixes 20 images of the
    known classes with 8 checkerboards."""
    tmp = tmp_path_factory.mktemp('open_set')
    data = make_image_folder(str(tmp / 'data'), ['0', '1'], per_class=12, val_per_class=40,
                             test_images=0)
    for i in range(20):  # drawn like the train and val images: the threshold's premise
        write_image(osp.join(data, 'test', f'known_{i}.jpg'), i % 2, seed=(7, i),
                    size=(36 + 4 * (i % 3), 44))
    checkerboards(osp.join(data, 'test'), count=8, seed=9)
    unknown_dir = checkerboards(str(tmp / 'unknown'))
    work_dir = tmp / 'work'
    result = run_tool('tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir',
                      str(work_dir), '--cfg-options', 'train_cfg.max_epochs=4',
                      'model.head.num_classes=2')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'Unknown threshold' in result.stdout and 'of val pass as known' in result.stdout
    best = str(sorted(work_dir.glob('best_*.pth'))[-1])
    cfg = load_config(TINY_CONFIG, {'model.head.num_classes': 2}, data_root=data)
    return dict(data=data, work_dir=work_dir, best=best, cfg=cfg, unknown_dir=unknown_dir)


@pytest.mark.slow
def test_unseen_pattern_is_flagged_and_known_images_pass(open_set_run):
    run = open_set_run
    record = read_calibration(run['best'])['open_set']
    assert record['threshold'] is not None and record['bank_images'] == 24
    assert record['val_known_rate'] >= 0.95
    assert osp.isfile(run['best'][:-4] + '.features.npz')
    result = measure_open_set(run['cfg'], run['best'], run['unknown_dir'])
    assert result['signals']['unknown_score']['auroc'] > 0.9
    assert result['known_kept'] >= 0.95  # the documented rate, on val
    assert result['unknown_flagged'] > 0.5


@pytest.mark.slow
def test_csv_python_api_and_onnx_agree_on_the_unknown_column(open_set_run, tmp_path):
    run = open_set_run
    csv = tmp_path / 'prediction.csv'
    # float32 on both sides: compared with the Python API and an ONNX file (float32 too)
    status, stdout, stderr = tool_main('test.py', TINY_CONFIG, run['best'], '--csv', csv,
                                       '--data-root', run['data'], '--work-dir', tmp_path,
                                       '--unknown-label', 'not_mine', '--fp32', *TWO_CLASSES)
    assert status == 0, stderr
    frame = pd.read_csv(csv, dtype={'pred_label': str})
    assert list(frame.columns[:2]) == ['image_name', 'pred_label'] and len(frame) == 28
    boards = frame.image_name.str.startswith('board_')
    assert frame.unknown[boards].mean() >= 0.75  # the unseen pattern
    assert frame.unknown[~boards].mean() <= 0.10  # images of the known classes
    assert (frame.pred_label[frame.unknown] == 'not_mine').all()
    assert (frame.decision[frame.unknown] == 'review').all()
    assert f'{int(frame.unknown.sum())} of 28 images flagged unknown' in stdout

    table = BioClassifier(run['cfg'], run['best'], precision='fp32').predict(
        osp.join(run['data'], 'test'))
    np.testing.assert_allclose(table.unknown_score, frame.unknown_score, atol=1e-5)

    onnx_file = tmp_path / 'model.onnx'
    status, _, stderr = tool_main('deploy/export_onnx.py', TINY_CONFIG, run['best'], '--out',
                                  onnx_file, '--data-root', run['data'], '--work-dir',
                                  tmp_path, *TWO_CLASSES)
    assert status == 0, stderr
    status, _, stderr = tool_main('test.py', TINY_CONFIG, str(onnx_file), '--csv',
                                  tmp_path / 'onnx.csv', '--data-root', run['data'],
                                  '--work-dir', tmp_path, *TWO_CLASSES)
    assert status == 0, stderr
    from_onnx = pd.read_csv(tmp_path / 'onnx.csv', dtype={'pred_label': str})
    # ONNX Runtime's float32 kernels differ from torch's in the last bits, which the score's
    # nearest-neighbour distances amplify (0.4 % measured); the flags must agree exactly
    np.testing.assert_allclose(from_onnx.unknown_score, frame.unknown_score, atol=1e-3,
                               rtol=1e-2)
    assert list(from_onnx.unknown) == list(frame.unknown)
    # the program without PyTorch reads the threshold from the metadata (its resizing is
    # close to OpenCV's, not bit for bit: a borderline image may flip)
    status, _, stderr = tool_main('deploy/predict_onnx.py', str(onnx_file),
                                  osp.join(run['data'], 'test'), '--csv', tmp_path / 'np.csv')
    assert status == 0, stderr
    standalone = pd.read_csv(tmp_path / 'np.csv', dtype={'pred_label': str})
    both = standalone.merge(frame, on='image_name', suffixes=('', '_csv'))
    assert len(both) == len(frame)
    assert (both.unknown == both.unknown_csv).mean() >= 0.9


@pytest.mark.slow
def test_open_set_tool_prints_every_signal(open_set_run):
    run = open_set_run
    status, stdout, stderr = tool_main('analysis/open_set.py', TINY_CONFIG, run['best'],
                                       '--unknown-dir', run['unknown_dir'], '--data-root',
                                       run['data'], '--work-dir', str(run['work_dir']),
                                       *TWO_CLASSES)
    assert status == 0, stderr
    for label in ('max softmax score', 'energy of the logits', 'kNN feature distance',
                  'unknown score (ours)', 'FPR at 95% TPR', 'of val kept as known'):
        assert label in stdout
    status, _, stderr = tool_main('analysis/open_set.py', TINY_CONFIG, run['best'],
                                  '--unknown-dir', str(run['work_dir'] / 'missing'),
                                  '--data-root', run['data'], *TWO_CLASSES)
    assert status != 0 and 'is not a folder' in stderr


def test_open_set_tool_without_a_threshold_says_what_to_run(tmp_path):
    from helpers import GOLDEN
    checkpoint = osp.join(GOLDEN, 'tiny_epoch_2.pth')
    with pytest.raises(ConfigError, match='run tools/analysis/calibrate.py'):
        measure_open_set(load_config(TINY_CONFIG, data_root=osp.join(GOLDEN, 'data')),
                         checkpoint, str(tmp_path))


def test_metadata_of_an_export_names_the_outputs(tmp_path):
    from bioplugin.deploy.metadata import build_metadata
    metadata = build_metadata(['a'], 8, 8, [], [0] * 3, [1] * 3,
                              outputs=('logits', 'scores', 'features', 'unknown_score'),
                              open_set=dict(threshold=1.5, known_rate=0.95, k=5,
                                            bank_images=10, mean={}, std={}))
    assert metadata['outputs'][-1] == 'unknown_score'
    assert metadata['open_set'] == dict(threshold=1.5, known_rate=0.95, k=5, bank_images=10)
    json.dumps(metadata)


@pytest.mark.slow
def test_every_column_of_the_csv_is_documented(open_set_run, tmp_path):
    import re
    from helpers import REPO
    run = open_set_run
    (tmp_path / 'names.csv').write_text('label,name\n0,zero\n1,one\n')
    (tmp_path / 'taxonomy.csv').write_text('species,genus\n0,G\n1,G\n')
    csv = tmp_path / 'all.csv'
    status, _, stderr = tool_main(
        'test.py', TINY_CONFIG, run['best'], '--csv', csv, '--data-root', run['data'],
        '--work-dir', tmp_path, '--topk', '2', '--include-index', '--class-names',
        tmp_path / 'names.csv', '--taxonomy', tmp_path / 'taxonomy.csv', *TWO_CLASSES)
    assert status == 0, stderr
    columns = list(pd.read_csv(csv).columns)
    assert columns[:2] == ['image_name', 'pred_label']
    assert {'decision', 'unknown', 'unknown_score', 'confident_rank'} <= set(columns)
    page = open(osp.join(REPO, 'docs', 'trust.md')).read()
    table = page[page.index('**The columns of `prediction.csv`**'):]
    table = table[:table.index('\n\n', table.index('| column'))]
    for column in columns:
        documented = re.sub(r'^top\d+_', 'top{i}_', re.sub(r'^genus_', '<rank>_', column))
        assert f'`{documented}`' in table, column
