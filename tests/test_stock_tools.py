"""MMPretrain's own tools/train.py and tools/test.py (what `mim train mmpretrain` runs) run our
configs exactly as our tools do: the config carries its whole meaning."""
import os.path as osp
import re

import pandas as pd
import pytest
import torch
from mmengine.config import Config

from bioplugin.datasets.loader_options import auto_num_workers
from bioplugin.engine.precision import resolve_precision

from helpers import REPO, make_image_folder, mmpretrain_tool, run_logs, run_tool

STOCK_CONFIG = osp.join(REPO, 'tests', 'configs', 'bio_tiny_stock.py')
pytestmark = pytest.mark.slow


def val_top1(log: str) -> dict:
    """``{epoch: val top-1}`` from a training log."""
    return {int(epoch): float(top1) for epoch, top1 in
            re.findall(r'Epoch\(val\) \[(\d+)\]\[\d+/\d+\]\s+accuracy/top1: ([\d.]+)', log)}


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('stock')
    data = make_image_folder(str(tmp / 'data'), ['0', '1', '2'], per_class=8, val_per_class=3,
                             test_images=5)
    data_root = f'data_root={data}'  # the only option: where the data is
    stock_dir, ours_dir = str(tmp / 'stock'), str(tmp / 'ours')
    stock = run_tool(mmpretrain_tool('train.py'), STOCK_CONFIG, '--work-dir', stock_dir,
                     '--cfg-options', data_root)
    resumed = run_tool(mmpretrain_tool('train.py'), STOCK_CONFIG, '--work-dir', stock_dir,
                       '--resume', '--cfg-options', data_root, 'train_cfg.max_epochs=3')
    ours = run_tool(osp.join('tools', 'train.py'), STOCK_CONFIG, '--work-dir', ours_dir,
                    '--data-root', data)
    for result in (stock, resumed, ours):
        assert result.returncode == 0, result.stderr[-4000:]
    return dict(tmp=tmp, data=data, data_root=data_root, stock_dir=stock_dir,
                ours_dir=ours_dir, stock=stock.stdout + stock.stderr,
                resumed=resumed.stdout + resumed.stderr, ours=run_logs(ours_dir)[0])


def test_stock_train_resolves_workers_and_precision_and_matches_ours(runs):
    stock, ours = val_top1(runs['stock']), val_top1(runs['ours'])
    assert sorted(stock) == sorted(ours) == [1, 2]
    assert stock == ours  # same seed, same recipe, same numbers
    # the work dir keeps the config as declared (it runs the same on another machine); the
    # log holds it as BioRunner resolved it for this one
    dumped = Config.fromfile(osp.join(runs['stock_dir'], 'bio_tiny_stock.py'))
    assert dumped.train_dataloader.num_workers == 'auto'
    assert dumped.get('precision', 'auto') == 'auto'
    resolved = runs['stock']
    assert f'num_workers={auto_num_workers()}' in resolved and auto_num_workers() >= 1
    precision = resolve_precision('auto', 'cuda' if torch.cuda.is_available() else 'cpu')
    assert f"precision = '{precision}'" in resolved


def test_stock_resume_continues_to_epoch_3(runs):
    assert 'Resuming from' in runs['resumed']
    assert sorted(val_top1(runs['resumed'])) == [3]
    assert osp.isfile(osp.join(runs['stock_dir'], 'epoch_3.pth'))


def test_stock_test_writes_the_prediction_csv_of_the_test_split_as_ours(runs):
    checkpoint = osp.join(runs['stock_dir'], 'epoch_3.pth')
    work_dir = str(runs['tmp'] / 'stock_test')
    stock = run_tool(mmpretrain_tool('test.py'), STOCK_CONFIG, checkpoint, '--work-dir',
                     work_dir, '--cfg-options', runs['data_root'])
    assert stock.returncode == 0, stock.stderr[-4000:]
    ours_csv = str(runs['tmp'] / 'ours.csv')
    ours = run_tool(osp.join('tools', 'test.py'), STOCK_CONFIG, checkpoint, '--data-root',
                    runs['data'], '--csv', ours_csv)
    assert ours.returncode == 0, ours.stderr[-4000:]
    stock_rows = pd.read_csv(osp.join(work_dir, 'prediction.csv'), dtype={'pred_label': str})
    ours_rows = pd.read_csv(ours_csv, dtype={'pred_label': str})
    assert list(stock_rows.image_name) == [f'test_{i}' for i in range(5)]
    pd.testing.assert_frame_equal(stock_rows, ours_rows)


def test_stock_test_evaluates_a_labeled_split_with_the_recipes_metrics(runs):
    checkpoint = osp.join(runs['stock_dir'], 'epoch_3.pth')
    stock = run_tool(mmpretrain_tool('test.py'), STOCK_CONFIG, checkpoint, '--work-dir',
                     str(runs['tmp'] / 'stock_val'), '--cfg-options', runs['data_root'],
                     'test_dataloader.dataset.data_prefix=val',
                     'test_dataloader.dataset.labeled=True')
    assert stock.returncode == 0, stock.stderr[-4000:]
    found = re.search(r'Epoch\(test\) \[\d+/\d+\]\s+accuracy/top1: ([\d.]+)',
                      stock.stdout + stock.stderr)
    assert found, (stock.stdout + stock.stderr)[-3000:]
    assert float(found.group(1)) == pytest.approx(val_top1(runs['resumed'])[3], abs=1e-3)
