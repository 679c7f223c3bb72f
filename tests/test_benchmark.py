"""tools/benchmark.py end to end on the tiny config (every row, no timing assertions), and the
ratio / interval / verdict arithmetic of its report."""
import ast
import json
import math
import os.path as osp
import sys

import pytest

from bioplugin.engine.cpu_info import cpu_identity, cpu_name
from helpers import REPO, TINY_CONFIG, run_tool

sys.path.insert(0, osp.join(REPO, 'tools'))
from benchmarking.common import cpu_features, describe_cpu  # noqa: E402
from benchmarking.report import (INT8_MIN_RATIO_VNNI, MAX_RUNNER_OVERHEAD,  # noqa: E402
                                 MEMORY_TOLERANCE, MIN_INT8_AGREEMENT, MIN_RATIO, build_row,
                                 build_rows, failures, format_markdown, format_text)
from benchmarking.stats import median_coverage, median_interval, verdict  # noqa: E402

BENCHMARK = osp.join('tools', 'benchmark.py')
ROWS = ['augmentation small (64x48)', 'augmentation large (320x240)', 'inference ResNet18',
        'inference ResNet18 fp32, AVX2 kernels', 'inference ResNet18 ONNX Runtime fp32',
        'inference ResNet18 ONNX Runtime int8', 'training ResNet18', 'Runner overhead']


PAIRS = 2


def expected_verdicts(row: dict) -> tuple:
    """``(speed, memory)`` as a row's own numbers imply them against the report's targets."""
    overhead = row['key'] == 'overhead'
    target = 1 / (1 + MAX_RUNNER_OVERHEAD) if overhead else row['min_ratio']
    speed = ('PASS' if row['ratio_low'] >= target else
             'FAIL' if row['ratio_high'] < target else 'UNDECIDED: noise')
    tolerance = MAX_RUNNER_OVERHEAD if overhead else MEMORY_TOLERANCE
    fits = all(row[f'ours_{peak}'] <= row[f'reference_{peak}'] * (1 + tolerance)
               for peak in ('peak_mib', 'peak_cuda_mib') if f'ours_{peak}' in row)
    return speed, 'PASS' if fits else 'FAIL'


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('benchmark')
    json_file = str(tmp / 'benchmark.json')
    result = run_tool(BENCHMARK, '--config', TINY_CONFIG, '--batch-size', '2', '--iters', '1',
                      '--warmup', '1', '--repeats', '1', '--pairs', str(PAIRS),
                      '--num-workers', '0',
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
        sides = report['measurements'][row['key']]
        assert len(sides['ours']) == len(sides['reference']) == row['pairs'] == PAIRS
        assert row['ours_img_s'] > 0 and row['reference_img_s'] > 0
        ratios = [ours['images_per_s'] / reference['images_per_s']
                  for ours, reference in zip(sides['ours'], sides['reference'])]
        assert row['pair_ratios'] == pytest.approx(ratios)
        assert row['ratio'] == pytest.approx(sum(ratios) / PAIRS)  # the median of two
        assert (row['ratio_low'], row['ratio_high']) == pytest.approx((min(ratios), max(ratios)))
        assert math.isfinite(row['ratio'])
        assert row['ours_peak_mib'] > 0 and row['reference_peak_mib'] > 0
        assert (row['speed'], row['memory']) == expected_verdicts(row), row['case']


@pytest.mark.slow
def test_overhead_row_mirrors_the_runners_precision(tiny_run):
    _, report = tiny_run
    runner = report['measurements']['overhead']['ours']
    assert all(set(run['precision']) == {'autocast', 'channels_last', 'loss_scale'}
               for run in runner)
    overhead = next(row for row in report['rows'] if row['case'] == 'Runner overhead')
    assert overhead['overhead'] == pytest.approx(1 / overhead['ratio'] - 1)
    assert overhead['overhead_low'] == pytest.approx(1 / overhead['ratio_high'] - 1)
    # the Runner is measured once a pair and shared by the training and overhead rows
    assert report['measurements']['training']['ours'] == runner


@pytest.mark.slow
def test_markdown_table_lists_every_row(tiny_run):
    stdout, _ = tiny_run
    table = [line for line in stdout.splitlines() if line.startswith('| ')]
    assert len(table) == 1 + len(ROWS)
    assert all(any(line.startswith(f'| {case} |') for line in table) for case in ROWS)
    assert '| 90% interval |' in table[0]
    # two pairs cannot make a 90 % interval: the table says what they make
    assert f'{PAIRS} pair(s) a row' in stdout and '(50%)' in stdout


def _measured(rate, peak, pairs=5, **extra):
    """One side of a row: ``pairs`` processes that measured the same."""
    return [dict(images_per_s=rate, peak_rss_mib=peak, **extra) for _ in range(pairs)]


def _side(rates, peak=1000.):
    return [dict(images_per_s=rate, peak_rss_mib=peak) for rate in rates]


def test_order_statistic_interval_of_the_median():
    # 5 pairs: min-max, which holds the median with 1 - 2/32 = 93.75 %
    assert median_interval([1.1, 0.9, 1.3, 1.0, 1.2]) == (0.9, 1.3, pytest.approx(0.9375))
    # 10 pairs: the second smallest to the second largest (97.9 %; the third: 89.1 % < 90 %)
    ten = [float(i) for i in range(10, 0, -1)]
    assert median_interval(ten) == (2.0, 9.0, pytest.approx(1 - 2 * 11 / 1024))
    assert median_coverage(10, 3) < 0.9 < median_coverage(10, 2)
    # fewer than 5: min-max, with the smaller coverage it has
    assert median_interval([1.0, 2.0, 3.0, 4.0]) == (1.0, 4.0, pytest.approx(0.875))
    assert median_interval([1.5]) == (1.5, 1.5, 0.0)
    with pytest.raises(ValueError):
        median_interval([])


@pytest.mark.parametrize('ours, reference, expected', [
    # clear win: ours 1.3x the reference, each pair within a few percent
    ([13.0, 12.6, 13.4, 12.9, 13.1], [10.0, 9.8, 10.1, 10.0, 9.9], 'PASS'),
    # clear loss: 0.84x in every pair
    ([8.4, 8.3, 8.5, 8.2, 8.4], [10.0, 9.9, 10.1, 9.8, 10.0], 'FAIL'),
    # noise: the pairs' ratios range from 0.84x to 1.13x around the 1x target
    ([8.4, 11.3, 9.6, 10.4, 10.9], [10.0, 10.0, 10.0, 10.0, 10.0], 'UNDECIDED: noise'),
])
def test_verdict_follows_the_interval_of_synthetic_pairs(ours, reference, expected):
    row = build_row('inference_avx2', 'fp32', dict(ours=_side(ours), reference=_side(reference)))
    assert row['speed'] == expected
    assert row['ratio_low'] <= row['ratio'] <= row['ratio_high']
    assert row['coverage'] == pytest.approx(0.9375) and row['pairs'] == 5
    assert verdict(row['ratio_low'], row['ratio_high'], 1.0) == expected
    lines = failures([row])
    assert (any(line.startswith('FAIL') for line in lines)) is (expected == 'FAIL')
    assert (any(line.startswith('UNDECIDED') for line in lines)) is (expected != 'PASS'
                                                                      and expected != 'FAIL')
    assert f"{row['ratio_low']:.2f}–{row['ratio_high']:.2f}×" in format_text([row])


def test_ratios_are_taken_pair_by_pair():
    """A machine that slows down both sides of a pair alike leaves that pair's ratio as it
    was: the pairs' ratios decide, not the spread of either side."""
    ours, reference = [10., 5., 10., 5., 10.], [8., 4., 8., 4., 8.]
    row = build_row('inference_avx2', 'fp32', dict(ours=_side(ours), reference=_side(reference)))
    assert (row['ratio'], row['ratio_low'], row['ratio_high']) == (1.25, 1.25, 1.25)
    assert row['speed'] == 'PASS'
    # the same timings paired the other way round straddle the target
    crossed = build_row('inference_avx2', 'fp32',
                        dict(ours=_side(ours), reference=_side(reference[::-1][1:] + [8.])))
    assert crossed['speed'] == 'UNDECIDED: noise'


def test_memory_compares_the_medians_of_each_sides_peaks():
    ours = [dict(images_per_s=1., peak_rss_mib=peak)
            for peak in (990., 1500., 995., 1000., 980.)]
    reference = _side([1.] * 5, peak=1000.)
    row = build_row('onnx_fp32', 'fp32', dict(ours=ours, reference=reference))
    assert (row['ours_peak_mib'], row['memory']) == (995., 'PASS')  # one outlier does not count
    higher = [dict(result, peak_rss_mib=1100.) for result in ours]
    assert build_row('onnx_fp32', 'fp32', dict(ours=higher, reference=reference))['memory'] \
        == 'FAIL'


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


@pytest.mark.slow
def test_training_rows_say_how_long_each_side_waited_for_data(tiny_run):
    stdout, report = tiny_run
    training = next(row for row in report['rows'] if row['key'] == 'training')
    for side in ('ours', 'reference'):
        for measured in report['measurements']['training'][side]:
            assert len(measured['data_s']) == len(measured['iteration_s'])
        assert 0 <= training[f'{side}_data_share'] < 1
    assert 'waiting for data' in training['note']
    # float16 AMP is a GPU row: left out on a CPU
    assert 'training_amp' not in report['measurements']


def test_gpu_training_row_against_the_plain_float16_amp_loop():
    ours = _measured(600., 1900., peak_cuda_mib=9000., data_share=0.1,
                     precision=dict(autocast='bfloat16', channels_last=True, loss_scale=False))
    amp = _measured(400., 2000., peak_cuda_mib=12000., data_share=0.4,
                    precision=dict(autocast='float16', channels_last=False, loss_scale=True))
    fp32 = _measured(200., 2000., peak_cuda_mib=8000., data_share=0.2)
    measurements = {'training_amp': dict(ours=ours, reference=amp),
                    'training': dict(ours=ours, reference=fp32)}
    training, versus_amp = build_rows(measurements, {key: key for key in measurements})
    assert (versus_amp['ratio'], versus_amp['target'], versus_amp['speed']) == (
        1.5, '≥ 1×', 'PASS')
    assert versus_amp['note'].startswith('ours bfloat16 autocast, channels_last; reference '
                                         'float16 autocast, NCHW, loss scaling')
    assert 'waiting for data 10% (ours), 40% (reference) of the time' in versus_amp['note']
    assert training['note'].startswith('ours bfloat16 autocast, channels_last; reference '
                                       'fp32, NCHW')
    # the peak GPU memory counts as well as the process's
    assert (versus_amp['memory'], training['memory']) == ('PASS', 'FAIL')  # 9000 > 8000 MiB
    assert 'ours peak CUDA MiB' in format_text([versus_amp])


@pytest.mark.slow
def test_onnx_rows_and_cpu_header(tiny_run):
    stdout, report = tiny_run
    assert 'CPU: ' in stdout and describe_cpu(cpu_features()) in stdout
    assert cpu_name() in stdout  # vendor and model, not only the flags
    rows = {row['key']: row for row in report['rows']}
    int8 = rows['onnx_int8']
    assert int8['min_ratio'] == (INT8_MIN_RATIO_VNNI if cpu_features()['VNNI'] else 2.0)
    assert 'random weights: no target' in int8['note'] and int8['agreement_ok']
    # the ONNX rows and the inference row share one measurement of the plain loop
    reference = report['measurements']['inference']['reference']
    assert report['measurements']['onnx_fp32']['reference'] == reference
    assert 'oneDNN capped at AVX2' in rows['inference_avx2']['note']


def test_report_onnx_targets_follow_the_cpu_and_the_agreement():
    def onnx_measurements(agreement, trained):
        return {'onnx_fp32': dict(ours=_measured(13., 900., runtime='ONNX Runtime fp32'),
                                  reference=_measured(10., 1000.)),
                'onnx_int8': dict(ours=_measured(25., 800., runtime='ONNX Runtime int8'),
                                  reference=_measured(10., 1000.),
                                  agreement=dict(top1_agreement=agreement, images=57,
                                                 split='val', trained=trained))}
    labels = {'onnx_fp32': 'fp32', 'onnx_int8': 'int8'}
    vnni = dict(VNNI=True)
    fp32, int8 = build_rows(onnx_measurements(0.98, True), labels, vnni)
    assert (fp32['ratio'], fp32['speed'], fp32['target']) == (1.3, 'PASS', '≥ 1.2×')
    # 2.5x passes the AVX2 target but not the VNNI one
    assert (int8['speed'], int8['target']) == ('FAIL', f'≥ {INT8_MIN_RATIO_VNNI:g}×')
    assert build_rows(onnx_measurements(0.98, True), labels, dict(VNNI=False))[1]['speed'] \
        == 'PASS'
    assert not int8['agreement_ok'] and '98.0% on 57 val images' in int8['note']
    lines = failures([fp32, int8])
    assert any('agrees with fp32 on 98.0%' in line and f'{MIN_INT8_AGREEMENT:.0%}' in line
               for line in lines)
    # a trained model at 99 % passes; random weights carry no agreement target
    assert build_rows(onnx_measurements(0.99, True), labels, vnni)[1]['agreement_ok']
    untrained = build_rows(onnx_measurements(0.5, False), labels, vnni)[1]
    assert untrained['agreement_ok'] and 'no target' in untrained['note']
    assert not any('agrees' in line for line in failures([untrained]))


@pytest.mark.parametrize('flags, expected', [
    ('fpu sse avx avx2 fma', dict(AVX2=True)),
    ('avx2 avx512f avx512_vnni avx512_bf16', {'AVX2': True, 'AVX-512': True, 'VNNI': True,
                                               'bfloat16': True}),
    ('avx2 avx_vnni amx_tile amx_int8 amx_bf16', dict(AVX2=True, VNNI=True, bfloat16=True,
                                                      AMX=True)),
])
def test_cpu_features_are_read_from_the_flags(tmp_path, flags, expected):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text(f'processor\t: 0\nflags\t\t: {flags}\n')
    features = cpu_features(str(cpuinfo))
    assert features == {name: expected.get(name, False)
                        for name in ('AVX2', 'AVX-512', 'VNNI', 'bfloat16', 'AMX')}
    assert describe_cpu(features).startswith('AVX2 yes, AVX-512 ')


def test_the_cpu_is_named_by_vendor_model_and_numbers(tmp_path):
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\n'
                       'model\t\t: 17\nmodel name\t: AMD EPYC 9R14 96-Core Processor\n'
                       'stepping\t: 1\nflags\t\t: avx2\n\nprocessor\t: 1\n'
                       'vendor_id\t: Other\n')
    identity = cpu_identity(str(cpuinfo))
    assert identity == dict(vendor='AuthenticAMD', model='AMD EPYC 9R14 96-Core Processor',
                            family='family 25 model 17 stepping 1')
    assert cpu_name(identity) == ('AuthenticAMD, AMD EPYC 9R14 96-Core Processor '
                                  '(family 25 model 17 stepping 1)')


# ------------------------------------------------------------- a whole run on a small set

from benchmarking.small_run import PHASES, phases, plain_arguments  # noqa: E402


def test_small_run_phases_split_the_wall_time_between_launch_and_exit():
    stamps = dict(train=[[12, 20], [23, 30]], val=[[20, 21], [30, 32]], done=35)
    seconds = phases(stamps, launched=10, exited=40)
    assert seconds == {'start-up': 2, 'training epochs': 15, 'validation': 3,
                       'checkpoints': 2 + 3, 'end': 5, 'total': 30}
    assert sum(seconds[phase] for phase in PHASES) == seconds['total']
    with pytest.raises(ValueError, match='one validation per epoch'):
        phases(dict(train=[[1, 2]], val=[], done=3), 0, 4)


def test_plain_loop_mirrors_the_configs_resnet_or_refuses_it():
    from bioplugin.apis.config import load_config
    demo = load_config(osp.join(REPO, 'configs', 'bio_resnext50_plankton_cpu.py'))
    arguments = plain_arguments(demo, 6, epochs=2, batch_size=8, num_workers=0)
    values = dict(zip(arguments[::2], arguments[1::2]))
    assert values == {'--depth': '50', '--groups': '32', '--width-per-group': '4',
                      '--hidden-channels': '512', '--num-classes': '6', '--image-size': '128',
                      '--epochs': '2', '--batch-size': '8', '--num-workers': '0'}
    with pytest.raises(ValueError, match='torchvision widths'):
        plain_arguments(load_config(TINY_CONFIG), 3, 1, 4, 0)


def test_plain_loop_imports_torch_and_torchvision_only():
    """Its start-up is the reference of ours: no MMEngine, MMPretrain or bioplugin in it."""
    script = osp.join(REPO, 'tools', 'benchmarking', 'plain_run.py')
    probe = ('import runpy, sys\n'
             f'sys.argv = [{script!r}, "--help"]\n'
             'try:\n'
             f'    runpy.run_path({script!r}, run_name="__main__")\n'
             'except SystemExit:\n'
             '    pass\n'
             'print(sorted({name.split(".")[0] for name in sys.modules}))\n')
    result = run_tool('-c', probe)
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))
    assert {'torch', 'torchvision'} <= loaded
    assert not loaded & {'mmengine', 'mmpretrain', 'mmcv', 'bioplugin', 'benchmarking'}


@pytest.mark.slow
def test_small_run_benchmark_times_both_sides_phase_by_phase(tmp_path, tiny_data):
    config = tmp_path / 'tiny_torchvision_widths.py'
    config.write_text(f'_base_ = [{TINY_CONFIG!r}]\n'
                      "model = dict(backbone=dict(stem_channels=64, base_channels=64),\n"
                      "             head=dict(in_channels=512))\n")
    json_file = tmp_path / 'small_run.json'
    result = run_tool(osp.join('tools', 'benchmark_small_run.py'), str(config), '--data-root',
                      tiny_data, '--epochs', '1', '--batch-size', '4', '--num-workers', '0',
                      '--no-calibrate', '--work-dir', str(tmp_path / 'runs'),
                      '--json', str(json_file))
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'AVX2' in result.stdout and 'ours / plain:' in result.stdout
    report = json.loads(json_file.read_text())
    for side in ('ours', 'plain'):
        seconds = report['median'][side]
        assert all(seconds[phase] > 0 for phase in PHASES), (side, seconds)
        # the phases leave out only the moments between an epoch's end and its validation
        assert sum(seconds[phase] for phase in PHASES) == pytest.approx(seconds['total'],
                                                                        abs=0.5)
    # ours wrote its epoch checkpoint, the plain loop its best weights
    assert osp.isfile(tmp_path / 'runs' / 'ours_0' / 'epoch_1.pth')
    assert osp.isfile(tmp_path / 'runs' / 'plain_0' / 'best.pth')
