"""End to end: tools/train.py on a tiny config, then --resume."""
import glob
import os.path as osp
import re

import pytest
import torch

from bioplugin.engine import ResumableEarlyStoppingHook

from helpers import TINY_CONFIG, run_logs, run_tool

pytestmark = pytest.mark.slow  # end-to-end runs of the tools

TRAIN = osp.join('tools', 'train.py')


def _epochs_trained(log: str):
    return sorted({int(epoch) for epoch in re.findall(r'Epoch\(train\) \[(\d+)\]', log)})


def _load(path):
    return torch.load(path, map_location='cpu')  # weights_only=True, the torch default


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Two epochs of training with validation, then --resume to epoch 3."""
    from helpers import make_image_folder
    tmp = tmp_path_factory.mktemp('train')
    data = make_image_folder(str(tmp / 'data'), ['0', '1', '2'], per_class=8, val_per_class=3)
    work_dir = str(tmp / 'work')
    # patience 0 and an unreachable threshold: the plateau scheduler cuts lr every epoch
    # after the first, so a scheduler that stopped stepping would show in the lr
    plateau = ['param_scheduler.patience=0', 'param_scheduler.threshold=1000',
               'param_scheduler.threshold_rule=abs']
    first = run_tool(TRAIN, TINY_CONFIG, '--data-root', data, '--work-dir', work_dir,
                     '--cfg-options', *plateau)
    assert first.returncode == 0, first.stderr[-3000:]
    epoch2 = _load(osp.join(work_dir, 'epoch_2.pth'))
    logs = run_logs(work_dir)  # the training's first, then the calibration's evaluations'
    resumed = run_tool(TRAIN, TINY_CONFIG, '--data-root', data, '--work-dir', work_dir,
                       '--resume', '--cfg-options', 'train_cfg.max_epochs=3', *plateau)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    first_log, resumed_log = logs[0], run_logs(work_dir)[len(logs)]
    return dict(work_dir=work_dir, data=data, first=first.stdout + first_log,
                resumed=resumed.stdout + resumed_log, epoch2=epoch2,
                epoch3=_load(osp.join(work_dir, 'epoch_3.pth')))


def test_two_epochs_train_validate_and_keep_the_best_checkpoint(trained):
    log = trained['first']
    assert _epochs_trained(log) == [1, 2]
    assert len(re.findall(r'Epoch\(val\) \[\d+\]\[\d+/\d+\]\s+accuracy/top1', log)) == 2
    assert 'Model parameters: 0.18 M total' in log
    assert len(glob.glob(osp.join(trained['work_dir'], 'best_accuracy_top1_epoch_*.pth'))) == 1
    assert re.search(r'Best checkpoint: \S+best_accuracy_top1_epoch_\d\.pth \(val top-1', log)
    assert trained['epoch2']['meta']['dataset_meta']['classes'] == ('0', '1', '2')


def test_epoch_checkpoint_is_written_after_that_epochs_validation(trained):
    epoch2 = trained['epoch2']
    val_history = epoch2['message_hub']['log_scalars']['val/accuracy/top1'].data[0]
    assert len(val_history) == 2  # validation 2 is in the epoch-2 checkpoint
    assert epoch2['param_schedulers'][0]['_global_step'] == 2
    assert early_stopping(epoch2)['best_score'] == pytest.approx(max(val_history))
    with open(osp.join(trained['work_dir'], 'last_checkpoint')) as file:
        assert file.read().strip().endswith('epoch_3.pth')


def test_resume_continues_at_epoch_3_not_from_0(trained):
    log = trained['resumed']
    assert 'resumed epoch: 2' in log
    assert _epochs_trained(log) == [3]
    assert trained['epoch3']['meta']['epoch'] == 3


def test_resume_restores_the_optimizer_state(trained):
    iters_per_epoch = 24 // 4
    steps = [state['step'].item() for state in trained['epoch3']['optimizer']['state'].values()]
    assert set(steps) == {3 * iters_per_epoch}  # AdamW's step count went on from epoch 2


def test_resume_keeps_the_plateau_scheduler_working_past_the_old_max_epochs(trained):
    lr = trained['epoch3']['optimizer']['param_groups'][0]['lr']
    assert trained['epoch2']['optimizer']['param_groups'][0]['lr'] == pytest.approx(1e-3 * 0.2)
    assert lr == pytest.approx(1e-3 * 0.2 ** 2)  # cut again at epoch 3
    scheduler = trained['epoch3']['param_schedulers'][0]
    assert scheduler['_global_step'] == 3 and scheduler['end'] > 3


def early_stopping(checkpoint) -> dict:
    """The early-stopping state a checkpoint holds (in MMEngine's message hub)."""
    return checkpoint['message_hub']['runtime_info']['early_stopping']


def test_resume_restores_early_stopping_state(trained):
    before, after = early_stopping(trained['epoch2']), early_stopping(trained['epoch3'])
    assert f"best accuracy/top1 = {before['best_score']:.4f}" in trained['resumed']
    top1 = trained['epoch3']['message_hub']['log_scalars']['val/accuracy/top1'].current()
    if top1 > before['best_score'] + 1e-4:
        assert after == dict(best_score=pytest.approx(top1), wait_count=0)
    else:  # no improvement at epoch 3: the count went on from the resumed state
        assert after == dict(best_score=before['best_score'],
                             wait_count=before['wait_count'] + 1)


class _Runner:
    """What the hook uses of a Runner: a message hub and a logger."""

    def __init__(self, message_hub):
        self.message_hub = message_hub

    class logger:  # noqa: N801
        @staticmethod
        def info(message):
            pass


def test_early_stopping_patience_counts_ties_as_no_improvement():
    from mmengine.config import Config
    from helpers import RECIPE_CONFIG
    config = [h for h in Config.fromfile(RECIPE_CONFIG).custom_hooks
              if h['type'] == 'ResumableEarlyStoppingHook'][0]
    hook = ResumableEarlyStoppingHook(**{k: v for k, v in config.items() if k != 'type'})
    waits = []
    for top1 in (50.0, 50.0, 60.0, 60.0, 59.0):
        hook._check_stop_condition(top1)
        waits.append(hook.wait_count)
    assert waits == [0, 1, 0, 1, 2]


def test_early_stopping_state_round_trips_through_a_checkpoint():
    from mmengine.logging import MessageHub
    hook = ResumableEarlyStoppingHook(monitor='accuracy/top1', rule='greater', patience=10)
    hub = MessageHub('early-stopping-test')
    for top1 in (71.5, 70.0, 71.0):
        hook.after_val_epoch(_Runner(hub), {'accuracy/top1': top1})
    assert hub.get_info('early_stopping') == dict(best_score=71.5, wait_count=2)
    resumed = MessageHub('early-stopping-resumed')
    resumed.load_state_dict(hub.state_dict())  # what MMEngine does when a run resumes
    fresh = ResumableEarlyStoppingHook(monitor='accuracy/top1', rule='greater', patience=10)
    fresh.before_train(_Runner(resumed))
    assert (fresh.best_score, fresh.wait_count) == (71.5, 2)

    untouched = ResumableEarlyStoppingHook(monitor='accuracy/top1', rule='greater', patience=10)
    untouched.before_train(_Runner(MessageHub('load-from-only')))  # load_from: no run state
    assert untouched.wait_count == 0 and untouched.best_score == -float('inf')


def test_amp_trains_and_validates_in_bfloat16_on_cpu(tmp_path, tiny_data):
    result = run_tool(TRAIN, TINY_CONFIG, '--data-root', tiny_data, '--work-dir', str(tmp_path),
                      '--amp', '--cfg-options', 'train_cfg.max_epochs=1')
    assert result.returncode == 0, result.stderr[-3000:]
    resolved = run_logs(tmp_path)[0]  # the log holds the config as this machine ran it
    # float16 with loss scaling only on a GPU without bfloat16
    fp16_gpu = torch.cuda.is_available() and not torch.cuda.is_bf16_supported()
    expected = 'AmpOptimWrapper' if fp16_gpu else 'AutocastOptimWrapper'
    assert f"type='{expected}'" in resolved
    assert 'val accuracy/top1' in result.stdout


def test_resume_without_checkpoint_is_a_clear_error(tmp_path, tiny_data):
    result = run_tool(TRAIN, TINY_CONFIG, '--data-root', tiny_data,
                      '--work-dir', str(tmp_path / 'empty'), '--resume')
    assert result.returncode == 2
    assert result.stderr.strip().startswith('error: Nothing to resume in')
    assert 'Traceback' not in result.stderr


def test_missing_dataset_is_one_clear_line(tmp_path):
    result = run_tool(TRAIN, TINY_CONFIG, '--data-root', str(tmp_path / 'nowhere'),
                      '--work-dir', str(tmp_path / 'work'))
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert re.search(r"^error: Dataset folder '.*nowhere/train' does not exist",
                     result.stderr.strip(), re.M)
