"""tools/test.py on a fixed checkpoint and fixed images gives the rows, labels and scores it has
always given (tests/fixtures/golden: written once, float32, scores to nine digits)."""
import os.path as osp

import numpy as np
import pandas as pd
import pytest

from helpers import GOLDEN, TINY_CONFIG, run_tool

pytestmark = pytest.mark.slow  # end-to-end runs of the tools

CHECKPOINT = osp.join(GOLDEN, 'tiny_epoch_2.pth')
DATA = osp.join(GOLDEN, 'data')


def read(path):
    return pd.read_csv(path, dtype={'pred_label': str, 'top2_label': str, 'top3_label': str,
                                    'gt_label': str})


def assert_same_predictions(frame, golden):
    assert list(frame.columns[:len(golden.columns)]) == list(golden.columns)
    scores = [column for column in golden.columns if 'score' in column]
    labels = [column for column in golden.columns if column not in scores]
    pd.testing.assert_frame_equal(frame[labels], golden[labels])
    np.testing.assert_allclose(frame[scores].to_numpy(float), golden[scores].to_numpy(float),
                               atol=1e-6, rtol=0)


@pytest.mark.parametrize('tta', [False, True])
def test_csv_of_the_test_split_is_unchanged(tmp_path, tta):
    csv = str(tmp_path / 'prediction.csv')
    result = run_tool(osp.join('tools', 'test.py'), TINY_CONFIG, CHECKPOINT, '--data-root', DATA,
                      '--work-dir', str(tmp_path), '--csv', csv, '--topk', '3', '--full-name',
                      '--fp32', *(['--tta'] if tta else []))
    assert result.returncode == 0, result.stderr[-3000:]
    golden = read(osp.join(GOLDEN, 'test_tta.csv' if tta else 'test.csv'))
    assert len(golden) == 5
    assert_same_predictions(read(csv), golden)


@pytest.mark.parametrize('tta', [False, True])
def test_evaluation_of_the_val_split_is_unchanged(tmp_path, tta):
    result = run_tool(osp.join('tools', 'test.py'), TINY_CONFIG, CHECKPOINT, '--data-root', DATA,
                      '--work-dir', str(tmp_path), '--fp32', *(['--tta'] if tta else []))
    assert result.returncode == 0, result.stderr[-3000:]
    suffix = '_tta' if tta else ''
    frame = read(tmp_path / f'predictions_val{suffix}.csv')
    golden = read(osp.join(GOLDEN, f'val{suffix}.csv'))
    assert len(golden) == 9
    assert_same_predictions(frame, golden)
    assert list(frame.image_path) == [osp.join(DATA, 'val', name) for name in golden.image_name]
