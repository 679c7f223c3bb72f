"""Benchmark measurements to rows with ratios, intervals and verdicts; text, markdown, JSON.

Each side of a row is a list of results, one per fresh process, measured in alternation with
the other side's (see :mod:`.stats` for the pairs' ratio, its interval and the verdicts).
"""
import json
import math
import statistics
from typing import Dict, List, Optional, Sequence

import pandas as pd

from .common import describe_precision
from .stats import CONFIDENCE, FAIL, PASS, UNDECIDED, paired_ratios, verdict

# ours / reference throughput each case must reach
# (training_amp: the Runner's bfloat16 / channels-last / fused AdamW at least as fast as the
# plain float16 AMP loop of a GPU; layout: channels-last at least as fast as NCHW)
MIN_RATIO = {'aug_small': 2.0, 'aug_large': 2.5, 'inference': 4.0, 'inference_avx2': 1.0,
             'onnx_fp32': 1.2, 'onnx_int8': 2.0, 'layout': 1.0, 'layout_avx2': 1.0,
             'training': 2.5, 'training_amp': 1.0}
# int8 on a CPU with VNNI (AVX512-VNNI, AVX-VNNI or AMX) multiplies int8 in one instruction
INT8_MIN_RATIO_VNNI = 3.0
# top-1 agreement of the int8 file with the fp32 one, on a trained model's val images
MIN_INT8_AGREEMENT = 0.99
# the Runner may cost this much more time per iteration, and peak memory, than the bare loop
# with its precision (its fixed cost: hooks, logger, visualizer, message hub)
MAX_RUNNER_OVERHEAD = 0.05
# elsewhere ours may peak at most this much above the reference (allocator and import noise)
MEMORY_TOLERANCE = 0.01
ROW_ORDER = ('aug_small', 'aug_large', 'inference', 'inference_avx2', 'onnx_fp32', 'onnx_int8',
             'layout', 'layout_avx2', 'training', 'training_amp', 'overhead')

COLUMNS = {  # row key -> displayed header
    'case': 'case', 'ours_img_s': 'ours img/s', 'reference_img_s': 'reference img/s',
    'ratio': 'ratio', 'interval': f'{CONFIDENCE:.0%} interval', 'target': 'target',
    'speed': 'speed', 'ours_peak_mib': 'ours peak MiB', 'reference_peak_mib': 'reference peak MiB',
    'ours_peak_cuda_mib': 'ours peak CUDA MiB',
    'reference_peak_cuda_mib': 'reference peak CUDA MiB',
    'memory': 'memory', 'note': 'note',
}


def _median(results: Sequence[dict], key: str) -> float:
    return statistics.median(result[key] for result in results)


def _fits(ours_mib: float, reference_mib: float, tolerance: float) -> bool:
    return ours_mib <= reference_mib * (1 + tolerance)


def min_ratio(key: str, cpu: Optional[dict] = None) -> float:
    """The ratio a row must reach; int8 expects more where the CPU has VNNI; the Runner's
    overhead row, at least ``1 / (1 + MAX_RUNNER_OVERHEAD)``."""
    if key == 'overhead':
        return 1 / (1 + MAX_RUNNER_OVERHEAD)
    if key == 'onnx_int8' and (cpu or {}).get('VNNI'):
        return INT8_MIN_RATIO_VNNI
    return MIN_RATIO[key]


def _agreement_note(agreement: dict) -> str:
    share = f"int8/fp32 top-1 agreement {agreement['top1_agreement']:.1%} on " \
            f"{agreement['images']} {agreement.get('split', 'val')} images"
    if not agreement.get('trained'):
        return share + ' (random weights: no target; pass --checkpoint)'
    passed = agreement['top1_agreement'] >= MIN_INT8_AGREEMENT
    return share + f" (target ≥ {MIN_INT8_AGREEMENT:.0%}: {PASS if passed else FAIL})"


def _sides_note(key: str, ours: dict, reference: dict) -> str:
    """What each side runs: precision and layout, or the runtime."""
    if key.startswith('onnx'):
        return f"ours {ours.get('runtime', 'ONNX Runtime')}; reference fp32, NCHW"
    if key.startswith('layout'):
        return 'ours fp32, channels_last; reference fp32, NCHW; both BioClassifier'
    if key in ('inference', 'inference_avx2', 'training', 'training_amp'):
        return (f"ours {describe_precision(ours.get('precision'))}; "
                f"reference {describe_precision(reference.get('precision'))}")
    return ''


def build_row(key: str, label: str, measured: dict, cpu: Optional[dict] = None) -> dict:
    """One table row from ``measured = dict(ours=[result, ...], reference=[result, ...])``
    (pair ``i``: the ``i``-th of each; optionally ``agreement``, the int8 check): the median
    throughput of each side, the median of the pairs' ratios ``ours / reference`` with its
    interval, the target and its verdict, and the median peak memory of each side (ours must
    not need more, within 1 %; the Runner within its 5 % overhead). ``cpu``:
    :func:`~.common.cpu_features`, for the int8 target."""
    ours, reference = measured['ours'], measured['reference']
    summary = paired_ratios([r['images_per_s'] for r in ours],
                            [r['images_per_s'] for r in reference])
    target = min_ratio(key, cpu)
    row = dict(key=key, case=label, ours_img_s=_median(ours, 'images_per_s'),
               reference_img_s=_median(reference, 'images_per_s'), ratio=summary['ratio'],
               ratio_low=summary['low'], ratio_high=summary['high'],
               coverage=summary['coverage'], pairs=len(ours), pair_ratios=summary['pair_ratios'],
               min_ratio=target, speed=verdict(summary['low'], summary['high'], target),
               ours_peak_mib=_median(ours, 'peak_rss_mib'),
               reference_peak_mib=_median(reference, 'peak_rss_mib'),
               note=_sides_note(key, ours[0], reference[0]))
    if key == 'overhead':
        # Runner time per iteration / bare time per iteration - 1, and its interval
        row.update(overhead=1 / row['ratio'] - 1, overhead_low=1 / row['ratio_high'] - 1,
                   overhead_high=1 / row['ratio_low'] - 1,
                   target=f'overhead ≤ {MAX_RUNNER_OVERHEAD:.0%}')
        memory_overhead = row['ours_peak_mib'] / row['reference_peak_mib'] - 1
        row['note'] = (f"Runner {row['overhead']:+.1%} per iteration ({row['overhead_low']:+.1%}"
                       f" to {row['overhead_high']:+.1%}), {memory_overhead:+.1%} peak memory; "
                       f"both {describe_precision(ours[0].get('precision'))}")
    else:
        row['target'] = f'≥ {target:g}×'
    if key.endswith('avx2'):
        row['note'] += '; both with oneDNN capped at AVX2'
    agreement = measured.get('agreement')
    if agreement:
        row['agreement'] = agreement['top1_agreement']
        row['agreement_ok'] = (not agreement.get('trained')
                               or agreement['top1_agreement'] >= MIN_INT8_AGREEMENT)
        row['note'] += '; ' + _agreement_note(agreement)
    if all('data_share' in r for r in ours + reference):
        row.update(ours_data_share=_median(ours, 'data_share'),
                   reference_data_share=_median(reference, 'data_share'))
        row['note'] = '; '.join(filter(None, [
            row['note'], f"waiting for data {row['ours_data_share']:.0%} (ours), "
                         f"{row['reference_data_share']:.0%} (reference) of the time"]))
    tolerance = MAX_RUNNER_OVERHEAD if key == 'overhead' else MEMORY_TOLERANCE
    memory_ok = _fits(row['ours_peak_mib'], row['reference_peak_mib'], tolerance)
    if all('peak_cuda_mib' in r for r in ours + reference):
        row.update(ours_peak_cuda_mib=_median(ours, 'peak_cuda_mib'),
                   reference_peak_cuda_mib=_median(reference, 'peak_cuda_mib'))
        memory_ok = memory_ok and _fits(row['ours_peak_cuda_mib'],
                                        row['reference_peak_cuda_mib'], tolerance)
    row['memory'] = PASS if memory_ok else FAIL
    return row


def build_rows(measurements: Dict[str, dict], labels: Dict[str, str],
               cpu: Optional[dict] = None) -> List[dict]:
    """Rows, in table order, for the cases in ``measurements`` (``{key: {'ours': [results],
    'reference': [results]}}``), named by ``labels``."""
    return [build_row(key, labels[key], measurements[key], cpu)
            for key in ROW_ORDER if key in measurements]


def failures(rows: List[dict]) -> List[str]:
    """One line per missed target and per row the noise left undecided; one more when the
    intervals hold the median with less than the intended confidence (too few pairs)."""
    lines = []
    fewest = min(rows, key=lambda row: row['coverage'], default=None)
    for row in rows:
        interval = f"{row['ratio_low']:.2f}–{row['ratio_high']:.2f}×"
        if row['speed'] == FAIL:
            lines.append(f"FAIL  {row['case']}: ratio {row['ratio']:.2f}× ({interval}, target "
                         f"{row['target']})")
        elif row['speed'] == UNDECIDED:
            lines.append(f"UNDECIDED  {row['case']}: ratio {row['ratio']:.2f}×, its interval "
                         f"{interval} straddles the target ({row['target']}); more --pairs or "
                         "a quieter machine decide it")
        if not row.get('agreement_ok', True):
            lines.append(f"FAIL  {row['case']}: int8 agrees with fp32 on "
                         f"{row['agreement']:.1%} of top-1 labels (target "
                         f"{MIN_INT8_AGREEMENT:.0%})")
        if row['memory'] == FAIL:
            lines.append(f"FAIL  {row['case']}: ours peaks at {row['ours_peak_mib']:.0f} MiB, "
                         f"the reference at {row['reference_peak_mib']:.0f} MiB (medians)")
    if fewest and fewest['coverage'] < CONFIDENCE:
        lines.append(f"NOTE  {fewest['pairs']} pair(s) a row: an interval holds the median "
                     f"ratio with {fewest['coverage']:.0%} confidence, not {CONFIDENCE:.0%} "
                     "(5 or more pairs reach it)")
    return lines


def _format_number(value: float) -> str:
    if not isinstance(value, float) or math.isnan(value):
        return ''
    return f'{value:.1f}' if value >= 10 else f'{value:.2f}'


def _format_interval(row: pd.Series) -> str:
    text = f"{row['ratio_low']:.2f}–{row['ratio_high']:.2f}×"
    return text if row['coverage'] >= CONFIDENCE else f"{text} ({row['coverage']:.0%})"


def display_frame(rows: List[dict]) -> pd.DataFrame:
    """The rows as strings under the displayed headers (CUDA columns only when measured)."""
    frame = pd.DataFrame(rows)
    frame['interval'] = frame.apply(_format_interval, axis=1)
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
    frame = display_frame(rows).replace(FAIL, f'**{FAIL}**')
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
