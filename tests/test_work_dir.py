"""A work dir never loses or mixes a run: a copy or a moved work dir works on its own files, one
training run writes into a work dir at a time, and nothing is trained over silently."""
import hashlib
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest

from bioplugin.engine.checkpoint_io import read_checkpoint
from bioplugin.engine.work_dir import LOCK, read_pointer
from helpers import REPO, TINY_CONFIG, make_image_folder, run_tool, train_tiny

TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')
REPORT = osp.join(REPO, 'tools', 'analysis', 'report.py')


def file_hashes(folder) -> dict:
    """``{relative path: sha256}`` of every file under ``folder``."""
    hashes = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = osp.join(root, name)
            with open(path, 'rb') as file:
                hashes[osp.relpath(path, folder)] = hashlib.sha256(file.read()).hexdigest()
    return hashes


def log_folders(work_dir) -> list:
    return sorted(name for name in os.listdir(work_dir)
                  if name[:8].isdigit() and osp.isdir(osp.join(work_dir, name)))


@pytest.mark.slow
def test_a_copied_work_dir_resumes_on_its_own_files(data, tmp_path):
    original, copy = tmp_path / 'W1', tmp_path / 'W2'
    first = train_tiny(data, original, epochs=1)
    assert first.returncode == 0, first.stderr[-2000:]
    assert open(original / 'last_checkpoint').read() == 'epoch_1.pth'  # by name, not path
    before = file_hashes(original)
    shutil.copytree(original, copy, symlinks=True)
    resumed = train_tiny(data, copy, '--resume', epochs=4)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f'Resuming from {copy}/epoch_1.pth' in resumed.stdout
    assert file_hashes(original) == before  # not one byte of the original changed
    assert read_pointer(str(copy)) == str(copy / 'epoch_4.pth')
    assert read_checkpoint(read_pointer(str(copy)))['meta']['epoch'] == 4


@pytest.mark.slow
def test_a_moved_work_dir_is_tested_and_reported_from_anywhere(tmp_path):
    """Trained with relative paths in one folder, moved, then used from another folder."""
    started = tmp_path / 'project'
    make_image_folder(str(started / 'data'), ['0', '1', '2'], per_class=8, val_per_class=3)
    result = run_tool(TRAIN, TINY_CONFIG, '--data-root', 'data', '--work-dir', 'runs/a',
                      '--cfg-options', 'train_cfg.max_epochs=2', cwd=str(started))
    assert result.returncode == 0, result.stderr[-2000:]
    moved = tmp_path / 'archive' / 'a'
    shutil.move(str(started / 'runs' / 'a'), str(moved))
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    saved = str(moved / osp.basename(TINY_CONFIG))
    test = run_tool(TEST, saved, str(moved), cwd=str(elsewhere))
    assert test.returncode == 0, test.stderr[-2000:]
    assert osp.isfile(moved / 'metrics_val.json') and f'{moved}/metrics_val.json' in test.stdout
    report = run_tool(REPORT, str(moved), '--gradcam-images', '1', cwd=str(elsewhere))
    assert report.returncode == 0, report.stderr[-2000:]
    assert osp.isfile(moved / 'report' / 'report.html')
    assert os.listdir(elsewhere) == []  # no stray work dir in the current folder
    assert not osp.exists(started / 'runs' / 'a')  # nothing written back where it was


def _start(data, work_dir, *extra):
    return subprocess.Popen([sys.executable, TRAIN, TINY_CONFIG, '--data-root', data,
                             '--work-dir', str(work_dir), '--cfg-options',
                             'train_cfg.max_epochs=4', *extra],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _wait_for_lock(work_dir, process, timeout=120):
    deadline = time.monotonic() + timeout
    lock = osp.join(str(work_dir), LOCK)
    while not (osp.isfile(lock) and open(lock).read().strip()):
        assert process.poll() is None and time.monotonic() < deadline, 'no lock taken'
        time.sleep(0.1)


@pytest.mark.slow
def test_a_second_training_run_into_a_busy_work_dir_stops_at_once(data, tmp_path):
    work_dir = tmp_path / 'shared'
    first = _start(data, work_dir)
    _wait_for_lock(work_dir, first)
    # paused while the second run starts, so that it is still training when that one checks
    # (a tiny run can otherwise end first); a paused process still holds its lock
    first.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        second = run_tool(TRAIN, TINY_CONFIG, '--data-root', data, '--work-dir',
                          str(work_dir), '--seed', '2', '--cfg-options',
                          'train_cfg.max_epochs=4')
    finally:
        first.send_signal(signal.SIGCONT)
    assert time.monotonic() - started < 60
    assert second.returncode == 2
    assert f'in use by another training run (process {first.pid} on' in second.stderr
    assert 'Traceback' not in second.stderr
    output, _ = first.communicate(timeout=600)
    assert first.returncode == 0, output[-3000:]
    assert read_checkpoint(read_pointer(str(work_dir)))['meta']['epoch'] == 4
    logs = [open(osp.join(work_dir, name, f'{name}.log')).read()
            for name in log_folders(work_dir)]
    assert all(log.count('System environment') == 1 for log in logs)  # never shared


@pytest.mark.slow
def test_a_killed_holder_leaves_no_lock_behind(data, tmp_path):
    work_dir = tmp_path / 'killed'
    holder = _start(data, work_dir)
    _wait_for_lock(work_dir, holder)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    after = train_tiny(data, work_dir, '--auto-resume', epochs=1)
    assert after.returncode == 0, after.stderr[-2000:]


@pytest.mark.slow
def test_auto_resume_over_damaged_checkpoints_changes_nothing(data, tmp_path):
    work_dir = tmp_path / 'damaged'
    first = train_tiny(data, work_dir, epochs=1)
    assert first.returncode == 0, first.stderr[-2000:]
    checkpoint = work_dir / 'epoch_1.pth'
    checkpoint.write_bytes(checkpoint.read_bytes()[:1000])  # cut short by a crash
    before = file_hashes(work_dir)
    result = train_tiny(data, work_dir, '--auto-resume', epochs=3)
    assert result.returncode == 2
    assert result.stderr.startswith('error: --auto-resume found no complete checkpoint')
    assert 'epoch_1.pth' in result.stderr and '--restart' in result.stderr
    assert file_hashes(work_dir) == before


@pytest.mark.slow
def test_a_fresh_start_never_trains_over_an_earlier_run(data, tmp_path):
    work_dir = tmp_path / 'again'
    assert train_tiny(data, work_dir, epochs=1).returncode == 0
    before = file_hashes(work_dir)
    again = train_tiny(data, work_dir, epochs=1)
    assert again.returncode == 2 and 'holds checkpoints of an earlier run' in again.stderr
    assert file_hashes(work_dir) == before
    restarted = train_tiny(data, work_dir, '--restart', epochs=1)
    assert restarted.returncode == 0, restarted.stderr[-2000:]
    archive = next(name for name in os.listdir(work_dir) if name.startswith('previous_'))
    assert 'was moved to' in restarted.stdout
    kept = file_hashes(work_dir / archive)
    assert {name: digest for name, digest in before.items() if name in kept} == kept
    assert {'epoch_1.pth', 'last_checkpoint'} <= set(kept)
    # the best checkpoint's calibration, features and val posteriors go with it
    sidecars = {name for name in before
                if name.endswith(('.calibration.json', '.features.npz', '.val_posteriors.npz'))}
    assert any(name.endswith('.val_posteriors.npz') for name in sidecars)
    assert sidecars <= set(kept)


@pytest.mark.slow
def test_a_run_that_trains_nothing_says_so(data, tmp_path):
    zero = train_tiny(data, tmp_path / 'zero', epochs=0)
    assert zero.returncode == 2 and zero.stderr.startswith('error: train_cfg.max_epochs=0')
    done = tmp_path / 'done'
    assert train_tiny(data, done, epochs=1).returncode == 0
    resumed = train_tiny(data, done, '--resume', epochs=1)
    assert resumed.returncode == 2
    assert resumed.stderr.startswith('error: Nothing was trained')
    assert 'Checkpoints and logs are in' not in resumed.stdout
