import os

import pytest
import torch
from mmengine.config import Config

from bioplugin.apis import build_train_config, load_config
from bioplugin.engine.runner import BioRunner, resolve_config
from bioplugin.errors import ConfigError

from helpers import RECIPE_CONFIG, TINY_CONFIG, make_image_folder


@pytest.fixture(scope='module')
def recipe():
    return Config.fromfile(RECIPE_CONFIG)


def test_recipe_optimizer_schedule_and_stopping(recipe):
    optimizer = recipe.optim_wrapper.optimizer
    assert optimizer == dict(type='AdamW', lr=1e-3, weight_decay=1e-4,  # no inherited momentum
                             fused=True)
    assert recipe.optim_wrapper.clip_grad == dict(max_norm=1.0)

    scheduler = recipe.param_scheduler
    assert scheduler.type == 'ReduceOnPlateauLR'
    assert (scheduler.monitor, scheduler.rule) == ('accuracy/top1', 'greater')
    assert (scheduler.factor, scheduler.patience) == (0.2, 3)
    assert 'milestones' not in scheduler
    assert scheduler.end >= 1_000_000  # survives resuming with a larger max_epochs

    hooks = {hook['type']: hook for hook in recipe.custom_hooks}
    stopping = hooks['ResumableEarlyStoppingHook']
    assert (stopping['monitor'], stopping['rule'], stopping['patience']) == (
        'accuracy/top1', 'greater', 10)
    checkpoint = recipe.default_hooks.checkpoint
    assert (checkpoint.save_best, checkpoint.rule) == ('accuracy/top1', 'greater')
    assert hooks['ParameterCountHook']['budget'] == 100e6

    assert recipe.train_dataloader.batch_size == 64
    assert recipe.train_dataloader.drop_last is True
    assert recipe.randomness.seed == 42
    assert recipe.custom_imports.imports == ['bioplugin']


def test_recipe_metrics_and_data_root(recipe):
    assert recipe.val_evaluator == [dict(type='Accuracy', topk=(1, 5)),
                                    dict(type='SingleLabelMetric', average='macro')]
    assert recipe.test_evaluator == dict(type='PredictionWriter', out_file='prediction.csv',
                                         labeled_metrics=recipe.val_evaluator)
    assert recipe.runner_type == 'BioRunner'
    assert recipe.data_root == 'data/bio'
    resolved = resolve_config(dict(recipe, work_dir='/tmp/bioplugin-test-workdir'))
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert resolved[name].dataset.data_root == 'data/bio'
    assert recipe.val_dataloader.dataset.classes_from == 'train'
    assert recipe.test_dataloader.dataset.labeled is False
    assert recipe.test_dataloader.dataset.bad_image_policy == 'placeholder'


def test_the_runner_gives_a_changed_top_level_data_root_to_every_split(recipe, tmp_path):
    resolved = resolve_config(dict(recipe, data_root='/x/specimens', work_dir=str(tmp_path)))
    assert [resolved[name].dataset.data_root for name in
            ('train_dataloader', 'val_dataloader', 'test_dataloader')] == ['/x/specimens'] * 3


def test_data_root_override_reaches_every_split():
    for cfg in (load_config(RECIPE_CONFIG, cfg_options={'data_root': '/x/specimens'}),
                load_config(RECIPE_CONFIG, data_root='/x/specimens')):
        assert [cfg[name].dataset.data_root for name in
                ('train_dataloader', 'val_dataloader', 'test_dataloader')] == ['/x/specimens'] * 3


def test_a_per_split_data_root_override_wins():
    cfg = load_config(RECIPE_CONFIG, data_root='/x/specimens',
                      cfg_options={'test_dataloader.dataset.data_root': '/y/field-photos'})
    assert cfg.train_dataloader.dataset.data_root == '/x/specimens'
    assert cfg.test_dataloader.dataset.data_root == '/y/field-photos'


def test_work_dir_defaults_to_the_config_name():
    assert load_config(RECIPE_CONFIG).work_dir == 'work_dirs/bio_resnext'
    assert load_config(RECIPE_CONFIG, work_dir='/tmp/run').work_dir == '/tmp/run'


def test_unknown_cfg_options_section_is_refused():
    with pytest.raises(ConfigError, match="'optim_wraper' is not a section"):
        load_config(RECIPE_CONFIG, cfg_options={'optim_wraper.optimizer.lr': 0.1})
    with pytest.raises(ConfigError, match="'model.backbone.init_cfgs' is not a section"):
        load_config(RECIPE_CONFIG, cfg_options={'model.backbone.init_cfgs.checkpoint': 'x'})


def resolved(config=RECIPE_CONFIG, **kwargs):
    """What BioRunner makes of a config (work dir in a temporary folder)."""
    cfg = build_train_config(config, **kwargs)
    cfg.work_dir = '/tmp/bioplugin-test-workdir'
    return resolve_config(cfg)


def test_auto_workers_become_one_per_core(monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: set(range(12)))
    cfg = resolved()
    expected = min(8, 12 // max(1, torch.cuda.device_count()))
    assert [cfg[name].num_workers for name in ('train_dataloader', 'val_dataloader',
                                               'test_dataloader')] == [expected] * 3
    assert cfg.train_dataloader.pin_memory is torch.cuda.is_available()
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0})
    assert resolved().train_dataloader.num_workers == 1


def test_zero_workers_switch_off_persistent_workers():
    cfg = resolved(cfg_options={'train_dataloader.num_workers': 0})
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.val_dataloader.persistent_workers is True
    with pytest.raises(ConfigError, match="num_workers='many'"):
        resolved(cfg_options={'train_dataloader.num_workers': 'many'})


def test_resume_amp_and_seed_flags():
    cfg = resolved(resume='auto', precision='bf16', seed=7)
    assert cfg.resume is True and cfg.load_from is None
    assert cfg.optim_wrapper.type in ('AutocastOptimWrapper', 'AmpOptimWrapper')
    assert cfg.val_cfg.fp16 is True
    # channels-last training only on GPUs: oneDNN's channels-last backward is unsafe on CPU
    assert ({'type': 'ChannelsLastHook'} in cfg.custom_hooks) == torch.cuda.is_available()
    fp32 = resolved(precision='fp32')
    assert fp32.optim_wrapper.get('type', 'OptimWrapper') == 'OptimWrapper'
    assert not fp32.val_cfg.get('fp16') and fp32.precision == 'fp32'
    assert cfg.randomness.seed == 7
    cfg = build_train_config(RECIPE_CONFIG, resume='work_dirs/x/epoch_3.pth')
    assert cfg.resume is True and cfg.load_from == 'work_dirs/x/epoch_3.pth'


def tiny_runner(root, work_dir, **cfg_options):
    cfg = load_config(TINY_CONFIG, cfg_options, work_dir=str(work_dir), data_root=root)
    return BioRunner.from_cfg(cfg)


def test_class_count_mismatch_names_the_fix(tmp_path):
    root = make_image_folder(str(tmp_path / 'data'), ['a', 'b', 'c', 'd'], per_class=2)
    with pytest.raises(ConfigError, match=r'4 classes .* 3 outputs.*model.head.num_classes=4'):
        tiny_runner(root, tmp_path / 'run').check_training_data()


def test_too_few_images_for_one_batch_is_refused(tmp_path):
    root = make_image_folder(str(tmp_path / 'data'), ['a', 'b', 'c'], per_class=1)
    with pytest.raises(ConfigError, match='3 images, fewer than one batch of 4'):
        tiny_runner(root, tmp_path / 'run').check_training_data()


def test_top5_is_dropped_when_there_are_fewer_classes(tmp_path):
    cfg = resolve_config(load_config(RECIPE_CONFIG, work_dir=str(tmp_path),
                                     cfg_options={'model.head.num_classes': 3}))
    for metrics in (cfg.val_evaluator, cfg.test_evaluator.labeled_metrics):
        accuracy = [e for e in metrics if e['type'] == 'Accuracy'][0]
        assert tuple(accuracy['topk']) == (1, )
    recipe = resolve_config(load_config(RECIPE_CONFIG, work_dir=str(tmp_path)))
    assert tuple(recipe.val_evaluator[0]['topk']) == (1, 5)
