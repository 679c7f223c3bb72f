"""Preemption-safe training: recovery checkpoints inside an epoch, save-and-exit on SIGTERM /
SIGUSR1, and Slurm requeueing; resumed runs end bit-identical to uninterrupted ones (CPU)."""
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

from bioplugin.engine.checkpoint_io import latest_complete_checkpoint, read_checkpoint
from bioplugin.engine.hooks import PREEMPTED_EXIT_CODE, RecoveryCheckpointHook
from bioplugin.errors import ConfigError

from helpers import (REPO, TINY_CONFIG, assert_same_weights, env_with_tests_on_path,
                     final_weights, killing_config, run_logs, train_tiny)

# 24 training images, batch 4: 6 iterations per epoch, 18 in the 3 epochs of train_tiny
RECOVERY_EVERY_4 = 'default_hooks.recovery.interval=4'


def log_of(result) -> str:
    return result.stdout + result.stderr


@pytest.mark.slow
def test_recovery_checkpoints_follow_the_interval_and_only_the_newest_is_kept(data, tmp_path):
    result = train_tiny(data, tmp_path, RECOVERY_EVERY_4, epochs=1)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [name for name in os.listdir(tmp_path) if 'recovery' in name] == ['recovery.pth']
    meta = read_checkpoint(str(tmp_path / 'recovery.pth'))['meta']
    assert (meta['epoch'], meta['iter']) == (0, 4)  # in epoch 1, after 4 of its 6 batches
    # the epoch checkpoint came later and holds more iterations: it is the one to resume
    assert latest_complete_checkpoint(str(tmp_path)).endswith('epoch_1.pth')


@pytest.mark.slow
def test_sigkill_after_a_recovery_checkpoint_resumes_at_that_batch(data, uninterrupted,
                                                                   tmp_path):
    config = killing_config(tmp_path, hook=dict(type='KillAtIterationHook', iteration=10))
    work_dir = tmp_path / 'killed'
    killed = train_tiny(data, work_dir, RECOVERY_EVERY_4, config=config,
                        env=env_with_tests_on_path())
    assert killed.returncode == -9  # SIGKILL after iteration 10, in epoch 2
    assert read_checkpoint(str(work_dir / 'recovery.pth'))['meta']['iter'] == 8
    resumed = train_tiny(data, work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    log = log_of(resumed)
    assert f'Resuming from {work_dir}/recovery.pth' in log
    assert 'Resuming epoch 2 at batch 3 of 6' in log  # iteration 9, not the epoch start
    assert 'Epoch(train) [2][1/6]' not in log
    assert_same_weights(uninterrupted, final_weights(work_dir))


@pytest.mark.slow
def test_a_checkpoint_with_channels_last_moments_resumes_exactly(data, uninterrupted, tmp_path):
    """As a checkpoint of a channels-last (GPU) run is when resumed on a CPU: AdamW's moments
    in another memory layout than the parameters must not change a single weight."""
    config = killing_config(tmp_path, hook=dict(type='KillAtIterationHook', iteration=7))
    work_dir = tmp_path / 'killed'
    killed = train_tiny(data, work_dir, config=config, env=env_with_tests_on_path())
    assert killed.returncode == -9  # in epoch 2, after epoch_1.pth
    path = str(work_dir / 'epoch_1.pth')
    checkpoint = read_checkpoint(path)
    relaid = 0
    for state in checkpoint['optimizer']['state'].values():
        for key in ('exp_avg', 'exp_avg_sq'):
            if state[key].dim() == 4:
                before = state[key].stride()
                state[key] = state[key].contiguous(memory_format=torch.channels_last)
                relaid += state[key].stride() != before  # 1x1 kernels may keep theirs
    assert relaid > 10
    torch.save(checkpoint, path)
    resumed = train_tiny(data, work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    logs = '\n'.join(run_logs(work_dir))
    assert f'Optimizer state: {relaid} tensors given the memory layout' in logs
    assert_same_weights(uninterrupted, final_weights(work_dir))


def _start_training(data, work_dir, *extra):
    """tools/train.py in the background, its log line by line."""
    return subprocess.Popen(
        [sys.executable, 'tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir',
         str(work_dir), '--verbose', '--cfg-options', 'train_cfg.max_epochs=3', *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_until(process, pattern: str, timeout: float = 300) -> str:
    """The log up to the first line matching ``pattern``."""
    seen, deadline = [], time.monotonic() + timeout
    for line in process.stdout:
        seen.append(line)
        if re.search(pattern, line):
            return ''.join(seen)
        assert time.monotonic() < deadline, ''.join(seen)[-3000:]
    raise AssertionError('training ended before ' + pattern + ':\n' + ''.join(seen)[-3000:])


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_that_iteration_and_exits_75(data, uninterrupted, tmp_path):
    process = _start_training(data, tmp_path)
    _read_until(process, r'Epoch\(train\) \[2\]\[2/6\]')  # 8 iterations done
    signalled_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=300)
    assert process.returncode == PREEMPTED_EXIT_CODE == 75, rest[-3000:]
    stopped = re.search(r'Stopped by SIGTERM after iteration (\d+) \(epoch 2, batch (\d)/6\)',
                        rest)
    assert stopped, rest[-3000:]
    iteration = int(stopped.group(1))
    assert 8 <= iteration <= 10  # the iteration under way when the signal came (or the next)
    assert read_checkpoint(str(tmp_path / 'recovery.pth'))['meta']['iter'] == iteration
    assert osp.getmtime(tmp_path / 'recovery.pth') >= signalled_at - 1
    assert not osp.exists(tmp_path / 'epoch_2.pth')
    resumed = train_tiny(data, tmp_path, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f'Resuming epoch 2 at batch {iteration - 6 + 1} of 6' in log_of(resumed)
    assert_same_weights(uninterrupted, final_weights(tmp_path))


@pytest.mark.slow
def test_sigusr1_to_the_whole_process_group_with_loader_workers(data, tmp_path):
    """As Slurm warns of the time limit: every process, loader workers included, is signalled."""
    process = subprocess.Popen(
        [sys.executable, 'tools/train.py', TINY_CONFIG, '--data-root', data, '--work-dir',
         str(tmp_path), '--verbose', '--cfg-options', 'train_cfg.max_epochs=3',
         'train_dataloader.num_workers=2', 'train_dataloader.persistent_workers=True'],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    _read_until(process, r'Epoch\(train\) \[2\]\[2/6\]')
    os.killpg(process.pid, signal.SIGUSR1)
    rest, _ = process.communicate(timeout=300)
    assert process.returncode == PREEMPTED_EXIT_CODE, rest[-3000:]
    iteration = int(re.search(r"Stopped by SIGUSR1 after iteration (\d+)", rest).group(1))
    assert read_checkpoint(str(tmp_path / 'recovery.pth'))['meta']['iter'] == iteration


@pytest.mark.slow
def test_a_kill_during_a_recovery_save_leaves_the_previous_checkpoint(data, uninterrupted,
                                                                      tmp_path):
    config = killing_config(tmp_path, recovery=dict(
        interval=4, backend_args=dict(backend='kill_during_save', kill_on='recovery.pth',
                                      nth=2)))
    work_dir = tmp_path / 'run'
    killed = train_tiny(data, work_dir, config=config, env=env_with_tests_on_path())
    assert killed.returncode == -9  # half-way through writing recovery.pth at iteration 8
    assert [name for name in os.listdir(work_dir) if name.endswith('.tmp')]
    assert read_checkpoint(str(work_dir / 'recovery.pth'))['meta']['iter'] == 4  # the old one
    assert latest_complete_checkpoint(str(work_dir)).endswith('epoch_1.pth')  # 6 iterations
    resumed = train_tiny(data, work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert_same_weights(uninterrupted, final_weights(work_dir))


def _children(pid: int) -> list:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as file:
                    fields = file.read().rsplit(')', 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry))
    return found


def _rank(pid: int) -> int:
    with open(f'/proc/{pid}/environ', 'rb') as file:
        env = dict(item.split(b'=', 1) for item in file.read().split(b'\0') if b'=' in item)
    return int(env[b'RANK'])


@pytest.mark.slow
def test_two_processes_stop_at_the_same_iteration_when_one_is_signalled(data, tmp_path):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = str(sock.getsockname()[1])
    command = ['bash', 'tools/dist_train.sh', TINY_CONFIG, '2', '--data-root', data,
               '--work-dir', str(tmp_path), '--verbose', '--cfg-options',
               'train_cfg.max_epochs=3']
    env = dict(os.environ, PYTHON=sys.executable, PORT=port)
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    # 24 images over 2 processes, batch 4: 3 iterations per epoch
    _read_until(process, r'Epoch\(train\) \[2\]\[1/3\]')
    workers = {_rank(pid): pid for pid in _children(process.pid)}
    assert sorted(workers) == [0, 1]
    os.kill(workers[1], signal.SIGTERM)  # only the second process is told
    rest, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    stopped = re.findall(r'Stopped by SIGTERM after iteration (\d+)', rest)
    assert len(stopped) == 1, rest[-3000:]  # logged once, by the first process
    iteration = int(stopped[0])
    assert read_checkpoint(str(tmp_path / 'recovery.pth'))['meta']['iter'] == iteration
    # the first process to leave exits 75; torchrun then ends any process still shutting down
    exits = re.findall(r'exitcode\s*: (-?\d+)', rest)
    assert exits[0] == str(PREEMPTED_EXIT_CODE) and set(exits) <= {'75', '-15'}, rest[-3000:]
    resumed = subprocess.run(command + ['--resume'], cwd=REPO, env=dict(env, PORT=str(
        int(port) + 1)), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f'Resuming from {tmp_path}/recovery.pth' in log_of(resumed)
    assert osp.isfile(tmp_path / 'epoch_3.pth')


class _Runner:
    class logger:  # noqa: N801
        @staticmethod
        def info(message):
            pass


def test_a_second_signal_ends_the_process_at_once(monkeypatch):
    hook = RecoveryCheckpointHook(signals=('SIGUSR1', ))
    previous = signal.getsignal(signal.SIGUSR1)
    hook.before_train(_Runner)
    try:
        sent = []
        monkeypatch.setattr(os, 'kill', lambda pid, signum: sent.append((pid, signum)))
        clock = [100.0]
        monkeypatch.setattr(time, 'monotonic', lambda: clock[0])
        hook._on_signal(signal.SIGUSR1, None)
        assert hook._received == signal.SIGUSR1 and sent == []  # first: finish, then save
        clock[0] += 0.2
        hook._on_signal(signal.SIGUSR1, None)  # the same request delivered twice
        assert sent == []
        clock[0] += 1.0
        hook._on_signal(signal.SIGUSR1, None)
        assert sent == [(os.getpid(), signal.SIGUSR1)]  # a second one: the default action, now
        assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    finally:
        hook.after_train(_Runner)
        signal.signal(signal.SIGUSR1, previous)
    assert signal.getsignal(signal.SIGUSR1) == previous


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match='interval=0'):
        RecoveryCheckpointHook(interval=0)
    with pytest.raises(ConfigError, match='minutes=-1'):
        RecoveryCheckpointHook(minutes=-1)
    with pytest.raises(ConfigError, match='SIGNOPE'):
        RecoveryCheckpointHook(signals=('SIGNOPE', ))


def test_the_newest_complete_checkpoint_wins_whatever_the_pointer_says(tmp_path):
    for name, iteration in (('epoch_1.pth', 6), ('recovery.pth', 8),
                            ('best_accuracy_top1_epoch_2.pth', 12)):  # never resumed from
        torch.save({'state_dict': {}, 'meta': {'iter': iteration}}, tmp_path / name)
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_1.pth'))
    assert latest_complete_checkpoint(str(tmp_path)) == str(tmp_path / 'recovery.pth')
    (tmp_path / 'recovery.pth').write_bytes(b'PK\x03\x04 cut short')
    assert latest_complete_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_1.pth')


def _fake_slurm(tmp_path, status: int) -> dict:
    """``srun`` and ``scontrol`` stand-ins that record their arguments; srun exits ``status``."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for name, body in (('srun', f'echo "$@" > {tmp_path}/srun.args\nexit {status}'),
                       ('scontrol', f'echo "$@" > {tmp_path}/scontrol.args')):
        (bin_dir / name).write_text(f'#!/usr/bin/env bash\n{body}\n')
        (bin_dir / name).chmod(0o755)
    return dict(os.environ, PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}',
                SLURM_JOB_ID='4242', REQUEUE='1', SIGNAL_LEAD='120')


@pytest.mark.parametrize('status', [0, PREEMPTED_EXIT_CODE, 1])
def test_slurm_script_asks_for_the_warning_signal_and_requeues_a_stopped_job(tmp_path, status):
    env = _fake_slurm(tmp_path, status)
    result = subprocess.run(['bash', 'tools/slurm_train.sh', 'gpu', 'bio', TINY_CONFIG,
                             '--work-dir', 'work_dirs/x'], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == status, result.stderr
    srun = (tmp_path / 'srun.args').read_text()
    assert '--signal=USR1@120' in srun
    assert srun.rstrip().endswith(f'{TINY_CONFIG} --launcher slurm --auto-resume '
                                  '--work-dir work_dirs/x')
    requeued = (tmp_path / 'scontrol.args').read_text() if osp.exists(
        tmp_path / 'scontrol.args') else None
    assert requeued == ('requeue 4242\n' if status == PREEMPTED_EXIT_CODE else None)
