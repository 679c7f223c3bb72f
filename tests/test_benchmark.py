"""tools/benchmark.py end to end on the tiny config (every row, no timing assertions), and the
ratio / verdict arithmetic of its report."""
import json
import math
import os.path as osp
import sys

import pytest

from helpers import REPO, TINY_CONFIG, run_tool

sys.path.insert(0, osp.join(REPO, 'tools'))
from benchmarking.report import (MAX_RUNNER_OVERHEAD, MEMORY_TOLERANCE, MIN_RATIO,  # noqa: E402
                                 build_rows, failures, format_markdown, format_text)

BENCHMARK = osp.join('tools', 'benchmark.py')
ROWS = ['augmentation small (64x48)', 'augmentation large (320x240)', 'inference ResNet18',
        'training ResNet18', 'Runner overhead']


def expected_verdicts(row: dict) -> tuple:
    """``(speed, memory)`` as a row's own numbers imply them against the report's targets."""
    overhead = row['key'] == 'overhead'
    fast = (row['overhead'] <= MAX_RUNNER_OVERHEAD if overhead
            else row['ratio'] >= MIN_RATIO[row['key']])
    tolerance = MAX_RUNNER_OVERHEAD if overhead else MEMORY_TOLERANCE
    fits = all(row[f'ours_{peak}'] <= row[f'reference_{peak}'] * (1 + tolerance)
               for peak in ('peak_mib', 'peak_cuda_mib') if f'ours_{peak}' in row)
    return tuple('PASS' if passed else 'FAIL' for passed in (fast, fits))


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('benchmark')
    json_file = str(tmp / 'benchmark.json')
    result = run_tool(BENCHMARK, '--config', TINY_CONFIG, '--batch-size', '2', '--iters', '1',
                      '--warmup', '1', '--repeats', '1', '--num-workers', '0',
                      '--image-size', '64x48', '--large-size', '320x240', '--aug-images', '2',
                      '--work-dir', str(tmp / 'work'), '--json', json_file, '--markdown')
    assert result.returncode == 0, result.stderr[-3000:]
    with open(json_file) as file:
        return result.stdout, json.load(file)


@pytest.mark.slow
def test_every_row_has_positive_throughputs_ratios_and_peak_memory(tiny_run):
    _, report = tiny_run
    rows = report['rows']
    assert [row['case'] for row in rows] == ROWS
    for row in rows:
        assert row['ours_img_s'] > 0 and row['reference_img_s'] > 0
        assert math.isfinite(row['ratio'])
        assert row['ratio'] == pytest.approx(row['ours_img_s'] / row['reference_img_s'])
        assert row['ours_peak_mib'] > 0 and row['reference_peak_mib'] > 0
        assert (row['speed'], row['memory']) == expected_verdicts(row), row['case']


@pytest.mark.slow
def test_overhead_row_mirrors_the_runners_precision(tiny_run):
    _, report = tiny_run
    runner = report['measurements']['overhead']['ours']
    assert set(runner['precision']) == {'autocast', 'channels_last', 'loss_scale'}
    overhead = next(row for row in report['rows'] if row['case'] == 'Runner overhead')
    assert overhead['overhead'] == pytest.approx(1 / overhead['ratio'] - 1)
    # the Runner is measured once and shared by the training and overhead rows
    assert report['measurements']['training']['ours'] == runner


@pytest.mark.slow
def test_markdown_table_lists_every_row(tiny_run):
    stdout, _ = tiny_run
    table = [line for line in stdout.splitlines() if line.startswith('| ')]
    assert len(table) == 1 + len(ROWS)
    assert all(any(line.startswith(f'| {case} |') for line in table) for case in ROWS)


def _measured(rate, peak, **extra):
    return dict(images_per_s=rate, peak_rss_mib=peak, **extra)


def test_report_ratios_targets_and_failures():
    precision = dict(autocast='bfloat16', channels_last=True, loss_scale=False)
    measurements = {
        'inference': dict(ours=_measured(50., 900.), reference=_measured(10., 1000.)),
        'training': dict(ours=_measured(2., 1200., precision=precision),
                         reference=_measured(1., 1000.)),
        'overhead': dict(ours=_measured(2., 1200., precision=precision),
                         reference=_measured(2.2, 1100.)),
    }
    labels = {key: key for key in measurements}
    inference, training, overhead = build_rows(measurements, labels)
    assert (inference['ratio'], inference['speed'], inference['memory']) == (5., 'PASS', 'PASS')
    assert (training['ratio'], training['speed'], training['memory']) == (2., 'FAIL', 'FAIL')
    assert overhead['overhead'] == pytest.approx(0.1) and overhead['speed'] == 'FAIL'
    assert 'bfloat16 autocast, channels_last' in overhead['note']
    assert len(failures([inference, training, overhead])) == 4
    assert 'FAIL' in format_text([training]) and '**FAIL**' in format_markdown([training])

    # the Runner's peak memory may exceed the bare loop's by its 5 % overhead, nothing else
    measurements = {'inference': dict(ours=_measured(50., 1040.), reference=_measured(10., 1000.)),
                    'overhead': dict(ours=_measured(2., 1040., precision=precision),
                                     reference=_measured(2., 1000.))}
    inference, overhead = build_rows(measurements, labels)
    assert (inference['memory'], overhead['memory']) == ('FAIL', 'PASS')
    assert '+4.0% peak memory' in overhead['note']
