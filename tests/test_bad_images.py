"""Bad image files: loaded upright and RGB when possible, skipped and recorded otherwise."""
import os.path as osp

import numpy as np
import pandas as pd
import pytest
from mmcv.transforms import Compose
from mmengine.registry import init_default_scope

from bad_inputs import LOADABLE, UNREADABLE, make_bad_image_folder
from bioplugin.apis import load_config
from bioplugin.datasets.bio_dataset import scan_images
from bioplugin.datasets.image_io import BadImageError
from mmpretrain.registry import DATASETS, TRANSFORMS
from helpers import TINY_CONFIG, run_tool


@pytest.fixture(scope='module')
def bad_folder(tmp_path_factory):
    return make_bad_image_folder(str(tmp_path_factory.mktemp('bad') / 'data'))


def _train_split(bad_folder):
    return [p for kind in UNREADABLE for p in bad_folder['kinds'][kind] if '/train/' in p]


def test_loadable_kinds_reach_the_pipeline_upright_and_3_channel(bad_folder):
    load = TRANSFORMS.build(dict(type='BioLoadImage'))
    kinds = set()
    for path, expected in bad_folder['expected'].items():
        img = load(dict(img_path=path))['img']
        width, height = expected['size']
        assert img.shape == (height, width, 3) and img.dtype == np.uint8, path
        top, bottom = img[2:height // 4].reshape(-1, 3), img[-height // 4:].reshape(-1, 3)
        tolerance = expected['tolerance'] + 1
        assert np.abs(np.median(top, 0) - expected['top_colour']).max() <= tolerance, path
        assert np.abs(np.median(bottom, 0) - expected['colour']).max() <= tolerance, path
        kinds.add(expected['kind'])
    assert kinds == set(LOADABLE)


def test_unreadable_kinds_raise_a_bad_image_error_naming_the_file(bad_folder):
    load = TRANSFORMS.build(dict(type='BioLoadImage'))
    for kind in UNREADABLE:
        for path in bad_folder['kinds'][kind]:
            with pytest.raises(BadImageError) as error:
                load(dict(img_path=path))
            assert error.value.path == path


def test_raise_policy_stops_at_the_first_bad_image(bad_folder):
    init_default_scope('mmpretrain')
    cfg = load_config(TINY_CONFIG, data_root=bad_folder['root'])
    dataset = DATASETS.build(dict(cfg.train_dataloader.dataset, bad_image_policy='raise'))
    bad_index = next(i for i in range(len(dataset))
                     if dataset.get_data_info(i)['img_path'] in _train_split(bad_folder))
    with pytest.raises(BadImageError):
        dataset[bad_index]
    skipping = DATASETS.build(cfg.train_dataloader.dataset)
    sample = skipping[bad_index]  # the next readable image instead
    assert sample['data_samples'].img_path not in _train_split(bad_folder)


@pytest.mark.slow
def test_training_and_prediction_complete_on_a_folder_of_bad_files(bad_folder, tmp_path):
    root = bad_folder['root']
    train_images = len(DATASETS.build(load_config(TINY_CONFIG, data_root=root)
                                      .train_dataloader.dataset))
    # a batch size that divides the split, so one epoch visits every file
    batch = next(b for b in (4, 3, 5, 6, 7, 2) if train_images % b == 0)
    result = run_tool('tools/train.py', TINY_CONFIG, '--data-root', root, '--work-dir',
                      str(tmp_path), '--cfg-options', 'train_cfg.max_epochs=1',
                      f'train_dataloader.batch_size={batch}')
    assert result.returncode == 0, result.stderr[-3000:]
    logged = pd.read_csv(tmp_path / 'bad_images.txt', sep='\t', names=['path', 'reason'])
    assert sorted(logged.path) == sorted(_train_split(bad_folder))
    assert 'unreadable image(s) skipped so far' in result.stdout + result.stderr

    csv = tmp_path / 'prediction.csv'
    result = run_tool('tools/test.py', TINY_CONFIG, str(tmp_path), '--data-root', root,
                      '--csv', str(csv))
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(csv, keep_default_na=False)
    test_files = sorted(osp.splitext(osp.basename(p))[0]
                        for p in scan_images(osp.join(root, 'test')))
    assert sorted(table.image_name) == test_files  # one row per test image
    flagged = table[table.status != 'ok']
    unreadable_names = {osp.splitext(osp.basename(p))[0] for kind in UNREADABLE
                        for p in bad_folder['kinds'][kind] if '/test/' in p}
    assert set(flagged.image_name) == unreadable_names
    assert (flagged.pred_label == '').all()
    assert flagged.status.str.startswith('unreadable: ').all()
    readable = table[table.status == 'ok']
    assert readable.pred_label.astype(str).isin(['0', '1', '2']).all()
    assert 'could not be read' in result.stderr

