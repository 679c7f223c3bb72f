"""What bioplugin relies on in MMEngine and MMPretrain beyond their documented interfaces.

Each override that reaches into a library's internals lives in one place; each test here
pins the behaviour it relies on, so that a new MMEngine / MMPretrain version that changes it
fails here, by name, instead of somewhere downstream.
"""
import inspect
import logging

import torch
from mmengine.evaluator import BaseMetric, Evaluator
from mmengine.hooks import CheckpointHook
from mmengine.runner import EpochBasedTrainLoop, Runner, TestLoop

from mmpretrain.models.tta import AverageClsScoreTTA
from mmpretrain.structures import DataSample

from bioplugin.apis import build_test_config, load_config
from bioplugin.engine.runner import BioRunner
from helpers import GOLDEN, TINY_CONFIG


def source(function) -> str:
    return inspect.getsource(function)


def test_runner_test_builds_the_loop_before_loading_the_checkpoint():
    """BioRunner.test reads the model's facts (classes, calibration) before MMEngine builds
    the test loop, and hands the built dataset to the prediction writers after: MMEngine
    builds the dataloader, then the evaluator, then loads the checkpoint."""
    test = source(Runner.test)
    assert test.index('build_test_loop') < test.index('load_or_resume')
    loop = source(TestLoop.__init__)
    assert loop.index('super().__init__(runner, dataloader)') < loop.index('build_evaluator')


def test_runner_keeps_what_it_loads_in_these_attributes(tmp_path):
    """BioRunner reads and sets _load_from / _resume / _has_loaded and swaps
    _test_dataloader / _test_evaluator / _test_loop (test_with): MMEngine keeps the
    constructor's arguments there until a loop is built."""
    cfg = build_test_config(load_config(TINY_CONFIG, data_root=f'{GOLDEN}/data',
                                        work_dir=str(tmp_path)),
                            f'{GOLDEN}/tiny_epoch_2.pth', 'val')
    runner = BioRunner.from_cfg(cfg)
    assert runner._load_from == cfg.load_from and runner._resume is False
    assert runner._has_loaded is False
    assert runner._test_dataloader['dataset']['data_prefix'] == 'val'
    assert runner._test_evaluator['type'] == 'PredictionWriter'
    assert isinstance(runner._test_loop, dict)
    assert isinstance(runner._val_dataloader, dict)
    runner.test()
    assert runner._has_loaded is True
    load = source(Runner.load_or_resume)
    assert 'if self._has_loaded' in load and 'self.load_checkpoint(self._load_from)' in load


def test_mmengine_load_checkpoint_does_what_biorunner_repeats():
    """BioRunner.load_checkpoint works on its one mapped read of the file and repeats
    MMEngine's steps: the after_load_checkpoint hooks, the weights into the bare model,
    _has_loaded."""
    load = source(Runner.load_checkpoint)
    for step in ("call_hook('after_load_checkpoint'", '_load_checkpoint_to_model',
                 'self._has_loaded = True'):
        assert step in load, step
    assert 'self.load_checkpoint(' in source(Runner.resume)


def test_checkpoint_hook_saves_and_removes_through_the_methods_we_wrap():
    """EpochEndCheckpointHook defers the removal of outdated checkpoints by wrapping these
    two methods and swapping ``file_backend``."""
    for name in ('_save_checkpoint_with_step', '_save_best_checkpoint'):
        assert hasattr(CheckpointHook, name), name
    assert list(inspect.signature(CheckpointHook._save_checkpoint_with_step).parameters) == [
        'self', 'runner', 'step', 'meta']
    assert 'self.file_backend.remove' in source(CheckpointHook._save_checkpoint_with_step)
    assert 'self.file_backend.remove' in source(CheckpointHook._save_best_checkpoint)


def test_epoch_loop_counts_in_these_attributes():
    """ResumableEpochBasedTrainLoop resumes inside an epoch from _iter and _epoch."""
    run_epoch = source(EpochBasedTrainLoop.run_epoch)
    assert 'self._epoch += 1' in run_epoch
    assert 'self._iter += 1' in source(EpochBasedTrainLoop.run_iter)


def test_an_empty_metric_prefix_keeps_the_names_and_warns_not():
    class Metric(BaseMetric):
        default_prefix = ''

        def process(self, data_batch, data_samples):
            pass

        def compute_metrics(self, results):
            return {'accuracy/top1': 1.0}

    metric = Metric()
    metric.results = [1]
    assert metric.evaluate(1) == {'accuracy/top1': 1.0}


def test_the_evaluator_hands_metrics_dicts_of_data_samples():
    """The prediction writer reads samples with ``.get``, as dicts or DataSamples."""
    seen = []

    class Metric(BaseMetric):
        def process(self, data_batch, data_samples):
            seen.extend(data_samples)

        def compute_metrics(self, results):
            return {}

    Evaluator([Metric(prefix='x')]).process([DataSample().set_pred_score(torch.ones(2))])
    assert isinstance(seen[0], dict) and 'pred_score' in seen[0]


def test_score_averaging_tta_keeps_the_first_views_other_fields():
    """MMPretrain's AverageClsScoreTTA averages ``pred_score`` and copies the first view's
    other fields, logits included: the post-processor must not take those logits."""
    views = []
    for logits in (torch.tensor([2.0, 0.0]), torch.tensor([0.0, 2.0])):
        sample = DataSample().set_pred_score(logits.softmax(0))
        sample.set_field(logits, 'pred_logits', dtype=torch.Tensor)
        views.append(sample)
    merged = AverageClsScoreTTA(module=dict(type='ImageClassifier',
                                            backbone=dict(type='ResNet', depth=18)))
    merged = merged.merge_preds([views])[0]
    assert torch.equal(merged.pred_logits, views[0].pred_logits)
    assert torch.allclose(merged.pred_score, torch.tensor([0.5, 0.5]))

    from bioplugin.evaluation.post_processor import sample_outputs
    outputs = sample_outputs(merged)
    assert outputs['feature'] is None
    assert torch.allclose(torch.tensor(outputs['logits']).softmax(0).float(),
                          merged.pred_score)


def test_mmengine_logger_writes_the_console_through_a_plain_stream_handler(tmp_path):
    """The summary console filters the logger's StreamHandler; its FileHandler keeps all."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance('contract', log_file=str(tmp_path / 'x.log'))
    kinds = sorted(type(handler).__name__ for handler in logger.handlers)
    assert kinds == ['FileHandler', 'StreamHandler']
    assert all(isinstance(handler, logging.StreamHandler) for handler in logger.handlers)


def test_datasets_keep_their_class_names_in_metainfo():
    """BioDataset sets the class names in ``_metainfo``, which ``metainfo`` returns."""
    from mmengine.dataset import BaseDataset
    assert '_metainfo' in source(BaseDataset.metainfo.fget)


def test_the_log_folder_is_named_by_the_timestamp_setup_env_sets():
    """BioRunner.setup_env claims a log folder of its own by changing ``_timestamp``, which
    MMEngine sets in setup_env and only then turns into the log folder and file names."""
    assert 'self._timestamp = ' in source(Runner.setup_env)
    init = source(Runner.__init__)
    assert init.index('self.setup_env(env_cfg)') < init.index(
        'self._log_dir = osp.join(self.work_dir, self.timestamp)')


def test_checkpoint_hook_restores_its_best_checkpoint_path_from_the_message_hub():
    """EpochEndCheckpointHook maps a resumed run's best checkpoint path into its own work
    dir after MMEngine restores it in before_train."""
    before_train = source(CheckpointHook.before_train)
    assert "runner.message_hub.get_info(\n                        'best_ckpt')" in before_train
    assert 'keep_ckpt_ids' in before_train
