"""Benchmark measurements to rows with ratios and targets; text, markdown and JSON output."""
import json
import math
from typing import Dict, List, Optional

import pandas as pd

from .common import describe_precision

# ours / reference throughput each case must reach
# (training_amp: the Runner's bfloat16 / channels-last / fused AdamW at least as fast as the
# plain float16 AMP loop of a GPU)
MIN_RATIO = {'aug_small': 2.0, 'aug_large': 2.5, 'inference': 4.0, 'inference_avx2': 1.0,
             'onnx_fp32': 1.2, 'onnx_int8': 2.0, 'training': 2.5, 'training_amp': 1.0}
# int8 on a CPU with VNNI (AVX512-VNNI, AVX-VNNI or AMX) multiplies int8 in one instruction
INT8_MIN_RATIO_VNNI = 3.0
# top-1 agreement of the int8 file with the fp32 one, on a trained model's val images
MIN_INT8_AGREEMENT = 0.99
# the Runner may cost this much more time per iteration, and peak memory, than the bare loop
# with its precision (its fixed cost: hooks, logger, visualizer, message hub)
MAX_RUNNER_OVERHEAD = 0.05
# elsewhere ours may peak at most this much above the reference (allocator and import noise)
MEMORY_TOLERANCE = 0.01
# slowest / fastest timed repetition above which a row is flagged as noisy
NOISY_SPREAD = 1.5
ROW_ORDER = ('aug_small', 'aug_large', 'inference', 'inference_avx2', 'onnx_fp32', 'onnx_int8',
             'training', 'training_amp', 'overhead')

COLUMNS = {  # row key -> displayed header
    'case': 'case', 'ours_img_s': 'ours img/s', 'reference_img_s': 'reference img/s',
    'ratio': 'ratio', 'target': 'target', 'speed': 'speed',
    'ours_peak_mib': 'ours peak MiB', 'reference_peak_mib': 'reference peak MiB',
    'ours_peak_cuda_mib': 'ours peak CUDA MiB',
    'reference_peak_cuda_mib': 'reference peak CUDA MiB',
    'memory': 'memory', 'note': 'note',
}


def _verdict(passed: bool) -> str:
    return 'PASS' if passed else 'FAIL'


def _fits(ours_mib: float, reference_mib: float, tolerance: float) -> bool:
    return ours_mib <= reference_mib * (1 + tolerance)


def spread(result: dict) -> float:
    """Slowest / fastest timed repetition (or iteration) of one side."""
    samples = result.get('iteration_s') or [1 / rate for rate in result.get('rates', ())]
    return max(samples) / min(samples) if samples else 1.0


def min_ratio(key: str, cpu: Optional[dict] = None) -> float:
    """The ratio a row must reach; int8 expects more where the CPU has VNNI."""
    if key == 'onnx_int8' and (cpu or {}).get('VNNI'):
        return INT8_MIN_RATIO_VNNI
    return MIN_RATIO[key]


def _agreement_note(agreement: dict) -> str:
    share = f"int8/fp32 top-1 agreement {agreement['top1_agreement']:.1%} on " \
            f"{agreement['images']} {agreement.get('split', 'val')} images"
    if not agreement.get('trained'):
        return share + ' (random weights: no target; pass --checkpoint)'
    return share + f" (target ≥ {MIN_INT8_AGREEMENT:.0%}: " \
        f"{_verdict(agreement['top1_agreement'] >= MIN_INT8_AGREEMENT)})"


def build_row(key: str, label: str, ours: dict, reference: dict,
              cpu: Optional[dict] = None) -> dict:
    """One table row: throughputs, ``ratio = ours / reference``, the target and its verdict,
    and the peak memory of both processes (ours must not need more, within 1 %; the Runner
    within its 5 % overhead). ``cpu``: :func:`~.common.cpu_features`, for the int8 target."""
    ratio = ours['images_per_s'] / reference['images_per_s']
    row = dict(key=key, case=label, ours_img_s=ours['images_per_s'],
               reference_img_s=reference['images_per_s'], ratio=ratio,
               ours_peak_mib=ours['peak_rss_mib'], reference_peak_mib=reference['peak_rss_mib'])
    if key == 'overhead':
        overhead = 1 / ratio - 1  # Runner time per iteration / bare time per iteration - 1
        memory_overhead = ours['peak_rss_mib'] / reference['peak_rss_mib'] - 1
        row.update(target=f'overhead ≤ {MAX_RUNNER_OVERHEAD:.0%}',
                   speed=_verdict(overhead <= MAX_RUNNER_OVERHEAD), overhead=overhead,
                   note=f"Runner {overhead:+.1%} per iteration, {memory_overhead:+.1%} peak "
                        f"memory; both {describe_precision(ours.get('precision'))}")
    else:
        target = row['min_ratio'] = min_ratio(key, cpu)
        row.update(target=f'≥ {target:g}×', speed=_verdict(ratio >= target), note='')
        if key in ('inference', 'inference_avx2', 'training', 'training_amp'):
            row['note'] = (f"ours {describe_precision(ours.get('precision'))}; "
                           f"reference {describe_precision(reference.get('precision'))}")
        if key == 'inference_avx2':
            row['note'] += '; both with oneDNN capped at AVX2'
        if key.startswith('onnx'):
            row['note'] = f"ours {ours.get('runtime', 'ONNX Runtime')}; reference fp32, NCHW"
        if 'agreement' in ours:
            agreement = ours['agreement']
            row['agreement'] = agreement['top1_agreement']
            row['agreement_ok'] = (not agreement.get('trained')
                                   or agreement['top1_agreement'] >= MIN_INT8_AGREEMENT)
            row['note'] += '; ' + _agreement_note(agreement)
    if 'data_share' in ours and 'data_share' in reference:
        row.update(ours_data_share=ours['data_share'],
                   reference_data_share=reference['data_share'])
        row['note'] = '; '.join(filter(None, [
            row['note'], f"waiting for data {ours['data_share']:.0%} (ours), "
                         f"{reference['data_share']:.0%} (reference) of the time"]))
    row['spread'] = max(spread(ours), spread(reference))
    if row['spread'] > NOISY_SPREAD:
        row['note'] = '; '.join(filter(None, [
            row['note'], f"NOISY: repetitions differ {row['spread']:.1f}×"]))
    tolerance = MAX_RUNNER_OVERHEAD if key == 'overhead' else MEMORY_TOLERANCE
    memory_ok = _fits(ours['peak_rss_mib'], reference['peak_rss_mib'], tolerance)
    if 'peak_cuda_mib' in ours and 'peak_cuda_mib' in reference:
        row.update(ours_peak_cuda_mib=ours['peak_cuda_mib'],
                   reference_peak_cuda_mib=reference['peak_cuda_mib'])
        memory_ok = memory_ok and _fits(ours['peak_cuda_mib'], reference['peak_cuda_mib'],
                                        tolerance)
    row['memory'] = _verdict(memory_ok)
    return row


def build_rows(measurements: Dict[str, dict], labels: Dict[str, str],
               cpu: Optional[dict] = None) -> List[dict]:
    """Rows, in table order, for the cases in ``measurements`` (``{key: {'ours': result,
    'reference': result}}``), named by ``labels``."""
    return [build_row(key, labels[key], measurements[key]['ours'],
                      measurements[key]['reference'], cpu)
            for key in ROW_ORDER if key in measurements]


def failures(rows: List[dict]) -> List[str]:
    """One line per missed target, and per row whose timings vary too much to trust."""
    lines = []
    for row in rows:
        if row.get('spread', 1.0) > NOISY_SPREAD:
            lines.append(f"NOISY {row['case']}: the slowest timed repetition took "
                         f"{row['spread']:.1f}× the fastest; rerun on an idle machine")
        if row['speed'] == 'FAIL':
            lines.append(f"FAIL  {row['case']}: ratio {row['ratio']:.2f}× "
                         f"(target {row['target']})")
        if not row.get('agreement_ok', True):
            lines.append(f"FAIL  {row['case']}: int8 agrees with fp32 on "
                         f"{row['agreement']:.1%} of top-1 labels (target "
                         f"{MIN_INT8_AGREEMENT:.0%})")
        if row['memory'] == 'FAIL':
            lines.append(f"FAIL  {row['case']}: ours peaks at {row['ours_peak_mib']:.0f} MiB, "
                         f"the reference at {row['reference_peak_mib']:.0f} MiB")
    return lines


def _format_number(value: float) -> str:
    if not isinstance(value, float) or math.isnan(value):
        return ''
    return f'{value:.1f}' if value >= 10 else f'{value:.2f}'


def display_frame(rows: List[dict]) -> pd.DataFrame:
    """The rows as strings under the displayed headers (CUDA columns only when measured)."""
    frame = pd.DataFrame(rows)
    columns = [key for key in COLUMNS if key in frame]
    frame = frame[columns].copy()
    for key in columns:
        if key == 'ratio':
            frame[key] = frame[key].map(lambda value: f'{value:.2f}×')
        elif key.endswith('_mib'):
            frame[key] = frame[key].map(lambda value: '' if pd.isna(value) else f'{value:.0f}')
        elif key.endswith('_img_s'):
            frame[key] = frame[key].map(_format_number)
    return frame.rename(columns=COLUMNS)


TEXT_COLUMNS = ('case', 'target', 'speed', 'memory', 'note')


def format_text(rows: List[dict]) -> str:
    """An aligned text table: words left-aligned, numbers right-aligned."""
    frame = display_frame(rows)
    keys = [key for key in COLUMNS if COLUMNS[key] in frame.columns]
    cells = [list(frame.columns)] + [[str(value) for value in values]
                                     for values in frame.itertuples(index=False)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(keys))]
    lines = ['  '.join(cell.ljust(width) if key in TEXT_COLUMNS else cell.rjust(width)
                       for key, cell, width in zip(keys, line, widths)).rstrip()
             for line in cells]
    return '\n'.join([lines[0], '-' * len(max(lines, key=len))] + lines[1:])


def format_markdown(rows: List[dict]) -> str:
    """A README-ready markdown table; missed targets in bold."""
    frame = display_frame(rows).replace('FAIL', '**FAIL**')
    lines = ['| ' + ' | '.join(frame.columns) + ' |',
             '|' + '|'.join('---' if key in TEXT_COLUMNS else '---:'
                            for key in COLUMNS if COLUMNS[key] in frame.columns) + '|']
    lines += ['| ' + ' | '.join(str(value) for value in values) + ' |'
              for values in frame.itertuples(index=False)]
    return '\n'.join(lines)


def write_json(path: str, report: dict) -> None:
    """The whole report (settings, environment, rows, raw measurements) as JSON."""
    with open(path, 'w') as file:
        json.dump(report, file, indent=2, default=str)
