"""The console of our tools: a summary; MMEngine's whole log in the work dir (and on the console
with --verbose); MMPretrain's own tools keep MMEngine's console."""
import glob
import os.path as osp

import pytest

from bioplugin.engine.console import SummaryFilter, console_mode, log_summary, set_console
from bioplugin.errors import ConfigError
from helpers import TINY_CONFIG, mmpretrain_tool, run_tool, train_tiny


def log_file(work_dir) -> str:
    return open(sorted(glob.glob(osp.join(str(work_dir), '2*', '2*.log')))[0]).read()


@pytest.mark.slow
def test_training_prints_a_summary_and_logs_everything(data, tmp_path):
    result = train_tiny(data, tmp_path / 'w', epochs=2)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    start = next(line for line in lines if line.startswith('Training bio_tiny.py'))
    for part in ('3 classes', '24 train / 9 val images', 'up to 2 epochs', 'from scratch',
                 'on cpu in', f'work dir {tmp_path / "w"}'):
        assert part in start, part
    epochs = [line for line in lines if line.startswith('epoch ')]
    assert len(epochs) == 2 and 'loss' in epochs[0] and 'val accuracy/top1' in epochs[0]
    assert 'ETA' in epochs[0] and 'ETA' not in epochs[1]
    assert any(line.startswith('Training ended after epoch 2') for line in lines)
    assert 'Checkpoints and logs are in' in lines[-1]
    assert len(lines) <= 20, result.stdout
    for dump in ('System environment', 'Config:', 'Hooks will be executed', 'Epoch(train)'):
        assert dump not in result.stdout and dump in log_file(tmp_path / 'w'), dump


@pytest.mark.slow
def test_verbose_brings_the_full_console_back(data, tmp_path):
    result = train_tiny(data, tmp_path / 'w', '--verbose', epochs=1)
    assert result.returncode == 0, result.stderr[-2000:]
    for dump in ('System environment', 'Config:', 'Epoch(train)'):
        assert dump in result.stdout, dump


@pytest.mark.slow
def test_mmpretrain_tools_keep_mmengine_console(data, tmp_path):
    result = run_tool(mmpretrain_tool('train.py'), TINY_CONFIG, '--work-dir', str(tmp_path),
                      '--cfg-options', f'data_root={data}', 'train_cfg.max_epochs=1')
    assert result.returncode == 0, result.stderr[-2000:]
    assert 'System environment' in result.stdout and 'Epoch(train)' in result.stdout


def test_summary_filter_lets_marked_lines_and_warnings_through():
    import logging

    def record(level, message, **extra):
        entry = logging.LogRecord('mmengine', level, __file__, 1, message, None, None)
        entry.__dict__.update(extra)
        return entry

    keep = SummaryFilter().filter
    assert keep(record(logging.INFO, 'epoch 1/3', console=True))
    assert not keep(record(logging.INFO, 'Epoch(train) [1][1/6]'))
    assert keep(record(logging.WARNING, '3 unreadable image(s) skipped'))
    assert not keep(record(logging.WARNING, '"FileClient" will be deprecated in future.'))
    assert keep(record(logging.ERROR, 'failed'))

    logger = logging.getLogger('bioplugin-console-test')
    logger.setLevel(logging.INFO)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    log_summary(logger, 'where results went')
    assert records[-1].console is True


def test_console_mode_comes_from_the_config_or_the_tools():
    try:
        set_console('summary')
        assert console_mode() == 'summary' and console_mode('full') == 'full'
        set_console('full')
        assert console_mode() == 'full'
        with pytest.raises(ConfigError, match="console='loud'"):
            console_mode('loud')
    finally:
        set_console('full')
