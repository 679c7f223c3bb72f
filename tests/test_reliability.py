"""Safe checkpoints, crash-safe saves, exact reproducibility and one-line errors."""
import os
import os.path as osp
import pickle

import pytest
import torch

from bioplugin.apis import BioClassifier
from bioplugin.engine.checkpoint_io import latest_complete_checkpoint, read_checkpoint
from bioplugin.errors import CheckpointError, ConfigError, OutputError
from bioplugin.apis.config import load_config
from bioplugin.fileio import atomic_write
from helpers import (TINY_CONFIG, assert_same_weights, env_with_tests_on_path,
                     final_weights, killing_config, run_tool, tool_main, train_tiny)

pytestmark = pytest.mark.slow  # end-to-end runs of the tools

class _Payload:
    """Unpickling this runs ``os.system``: it creates ``marker``."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def test_kill_9_mid_epoch_then_resume_gives_bit_identical_weights(data, uninterrupted,
                                                                   tmp_path):
    config = killing_config(tmp_path, hook=dict(type='KillAtIterationHook', iteration=9))
    work_dir = tmp_path / 'killed'
    killed = train_tiny(data, work_dir, config=config, env=env_with_tests_on_path())
    assert killed.returncode == -9  # SIGKILL in epoch 2 (iteration 9 of 6 per epoch)
    assert not osp.exists(work_dir / 'epoch_2.pth')
    resumed = train_tiny(data, work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f'Resuming from {work_dir}/epoch_1.pth' in resumed.stdout + resumed.stderr
    assert_same_weights(uninterrupted, final_weights(work_dir))


def test_two_loader_workers_give_the_same_weights_as_none(data, uninterrupted, tmp_path):
    result = train_tiny(data, tmp_path, 'train_dataloader.num_workers=2',
                    'train_dataloader.persistent_workers=True')
    assert result.returncode == 0, result.stderr[-2000:]
    assert_same_weights(uninterrupted, final_weights(tmp_path))


def test_kill_during_checkpoint_save_keeps_the_previous_one(data, uninterrupted, tmp_path):
    config = killing_config(
        tmp_path, checkpoint_backend=dict(backend='kill_during_save', kill_on='epoch_2.pth'))
    work_dir = tmp_path / 'run'
    killed = train_tiny(data, work_dir, config=config, env=env_with_tests_on_path())
    assert killed.returncode == -9
    leftovers = [name for name in os.listdir(work_dir) if name.endswith('.tmp')]
    assert leftovers, 'the kill should have hit the half-written temporary file'
    assert not osp.exists(work_dir / 'epoch_2.pth')
    assert (work_dir / 'last_checkpoint').read_text().strip().endswith('epoch_1.pth')
    assert read_checkpoint(str(work_dir / 'epoch_1.pth'))['meta']['epoch'] == 1
    resumed = train_tiny(data, work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_weights(uninterrupted, final_weights(work_dir))


def test_resume_skips_a_truncated_latest_checkpoint(tmp_path):
    """A checkpoint cut short (e.g. by an older tool) is passed over for the newest whole one."""
    whole = tmp_path / 'epoch_1.pth'
    torch.save({'state_dict': {'w': torch.ones(3)}, 'meta': {'epoch': 1}}, whole)
    cut = tmp_path / 'epoch_2.pth'
    torch.save({'state_dict': {'w': torch.ones(1000)}, 'meta': {'epoch': 2}}, cut)
    cut.write_bytes(cut.read_bytes()[:300])
    (tmp_path / 'last_checkpoint').write_text(str(cut))
    assert latest_complete_checkpoint(str(tmp_path)) == str(whole)
    with pytest.raises(CheckpointError, match='may be truncated'):
        read_checkpoint(str(cut))


@pytest.fixture
def malicious_checkpoint(tmp_path):
    marker = tmp_path / 'payload_ran'
    path = tmp_path / 'evil.pth'
    model = BioClassifier  # noqa: F841  (any import keeps the model registry loaded)
    torch.save({'state_dict': {}, 'meta': {}, 'extra': _Payload(str(marker))}, path)
    return str(path), marker


def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(malicious_checkpoint, data,
                                                                     tmp_path):
    path, marker = malicious_checkpoint
    with pytest.raises(CheckpointError, match=r'evil\.pth.*--trust-checkpoint'):
        read_checkpoint(path)
    commands = [
        ['tools/test.py', TINY_CONFIG, path, '--data-root', data],
        ['tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir', str(tmp_path / 'w1'),
         '--resume', path],
        ['tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir', str(tmp_path / 'w2'),
         '--cfg-options', f'load_from={path}'],
    ]
    for command in commands:
        result = run_tool(*command)
        assert result.returncode == 2, (command, result.stderr[-1500:])
        lines = result.stderr.strip().splitlines()
        assert lines[-1].startswith('error: Refused to load') and 'evil.pth' in lines[-1]
        assert 'Traceback' not in result.stderr
    assert not marker.exists()
    with pytest.raises(CheckpointError, match='Refused'):
        BioClassifier(TINY_CONFIG, path, cfg_options=dict(data_root=data))
    assert not marker.exists()


def test_pretrained_init_from_a_malicious_file_is_refused(malicious_checkpoint, data, tmp_path):
    path, marker = malicious_checkpoint
    config = tmp_path / 'pretrained_from_file.py'
    config.write_text(f"_base_ = [{TINY_CONFIG!r}]\nmodel = dict(backbone=dict(init_cfg=dict("
                      f"type='Pretrained', checkpoint={path!r}, prefix='backbone')))\n")
    result = run_tool('tools/train.py', str(config), '--data-root', data, '--work-dir',
                      str(tmp_path / 'run'))
    assert result.returncode == 2, result.stderr[-1500:]
    assert 'Refused to load' in result.stderr.strip().splitlines()[-1]
    assert not marker.exists()


def test_trust_checkpoint_is_an_explicit_opt_in(malicious_checkpoint, data):
    path, marker = malicious_checkpoint
    result = run_tool('tools/test.py', TINY_CONFIG, path, '--data-root', data,
                      '--trust-checkpoint')
    assert marker.exists()  # the user vouched for the file, so it was unpickled in full
    assert 'Refused' not in result.stderr


def test_unwritable_work_dir_is_one_line(data, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    result = train_tiny(data, blocker / 'run')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: Cannot write '{blocker}/run': a folder on its path is a file; choose another "
        '--work-dir / output path.']


def test_disk_full_while_saving_is_one_line(data, tmp_path):
    config = killing_config(tmp_path, checkpoint_backend=dict(backend='disk_full'))
    result = train_tiny(data, tmp_path / 'run', config=config, env=env_with_tests_on_path())
    assert result.returncode == 2, result.stderr[-1500:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: Cannot write') and 'the disk is full' in last
    assert 'Traceback' not in result.stderr


def test_atomic_write_keeps_the_old_file_when_the_disk_fills(tmp_path, monkeypatch):
    target = tmp_path / 'last_checkpoint'
    target.write_text('epoch_1.pth')

    def full_disk(handle):
        raise OSError(28, 'No space left on device')

    monkeypatch.setattr(os, 'fsync', full_disk)
    with pytest.raises(OutputError, match='the disk is full'):
        atomic_write(str(target), 'epoch_2.pth')
    assert target.read_text() == 'epoch_1.pth'
    assert os.listdir(tmp_path) == ['last_checkpoint']


def test_class_count_and_unknown_option_are_one_line_errors(data, tmp_path):
    def train(option):  # in this process: tools/train.py's main()
        return tool_main('train.py', TINY_CONFIG, '--data-root', data, '--work-dir', tmp_path,
                         '--cfg-options', option)
    status, _, err = train('model.head.num_classes=5')
    assert status == 2
    assert err.strip().splitlines() == [
        'error: The training data has 3 classes but the model head has 5 outputs; set '
        '`--cfg-options model.head.num_classes=3`.']
    status, _, err = train('train_cfg.max_epoch=3')
    assert status == 2
    assert err.strip().splitlines() == [
        "error: --cfg-options key 'train_cfg.max_epoch' is unknown; did you mean "
        "'train_cfg.max_epochs'?"]
    with pytest.raises(ConfigError):
        load_config(TINY_CONFIG, {'optim_wrapper.optimzer.lr': 0.1})
