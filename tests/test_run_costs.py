"""What a short run on a small set no longer pays for: formatting the config for every
checkpoint, a full garbage collection per dataset, and an epoch checkpoint every few seconds
(tools/benchmark_small_run.py measures the seconds)."""
import gc
import glob
import os.path as osp

import pytest
from mmengine.config import config as mmengine_config

from bioplugin.apis import build_train_config, train
from bioplugin.datasets import BioDataset

from helpers import TINY_CONFIG

pytestmark = pytest.mark.slow  # in-process training runs


@pytest.fixture
def format_calls(monkeypatch):
    calls = []
    original = mmengine_config.FormatCode

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(mmengine_config, 'FormatCode', counting)
    return calls


def run(data, work_dir, **options):
    cfg = build_train_config(TINY_CONFIG, work_dir=str(work_dir), data_root=data,
                             cfg_options=options)
    return train(cfg)


def saved_epochs(log_file: str) -> list:
    with open(log_file) as file:
        return [int(line.split('Saving checkpoint at ')[1].split()[0])
                for line in file if 'Saving checkpoint at ' in line]


def test_a_run_formats_its_config_texts_once(tiny_data, tmp_path, format_calls):
    runner = run(tiny_data, tmp_path, **{'train_cfg.max_epochs': 3})
    # the resolved config once (logged, kept in the message hub and in 3 epoch and 1+ best
    # checkpoints), the declared one once (dumped into the work dir)
    assert len(format_calls) == 2
    dumped = osp.join(tmp_path, 'bio_tiny.py')
    assert open(dumped).read() == runner.cfg.declared.pretty_text
    assert saved_epochs(glob.glob(osp.join(tmp_path, '*', '*.log'))[0]) == [1, 2, 3]


def test_epoch_checkpoints_wait_their_seconds_but_the_last_epoch_is_saved(tiny_data, tmp_path):
    run(tiny_data, tmp_path, **{'train_cfg.max_epochs': 3,
                                'default_hooks.checkpoint.min_seconds_between_saves': 3600})
    assert saved_epochs(glob.glob(osp.join(tmp_path, '*', '*.log'))[0]) == [3]
    assert open(osp.join(tmp_path, 'last_checkpoint')).read().endswith('epoch_3.pth')


def test_the_epoch_early_stopping_ends_on_is_saved(tiny_data, tmp_path):
    # min_delta 1000: no epoch after the first improves, patience 1 stops after epoch 2 of 6
    run(tiny_data, tmp_path, **{'train_cfg.max_epochs': 6,
                                'default_hooks.checkpoint.min_seconds_between_saves': 3600,
                                'custom_hooks.0.patience': 1, 'custom_hooks.0.min_delta': 1000})
    assert saved_epochs(glob.glob(osp.join(tmp_path, '*', '*.log'))[0]) == [2]
    assert open(osp.join(tmp_path, 'last_checkpoint')).read().endswith('epoch_2.pth')


def test_min_seconds_between_saves_must_be_a_non_negative_number():
    from bioplugin.engine import EpochEndCheckpointHook
    with pytest.raises(ValueError, match='min_seconds_between_saves'):
        EpochEndCheckpointHook(min_seconds_between_saves=-1)


def test_a_dataset_is_built_without_a_full_garbage_collection(tiny_data, monkeypatch):
    collections = []
    monkeypatch.setattr(gc, 'collect', lambda *args: collections.append(args))
    dataset = BioDataset(data_root=tiny_data, data_prefix='train', pipeline=[])
    assert len(dataset) == 24 and not collections
    assert dataset.get_data_info(0)['gt_label'] == 0
