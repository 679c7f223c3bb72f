"""Benchmark the recipe against the seed's plain PyTorch code, side by side, in one run.

    python tools/benchmark.py                                  # the recipe
    python tools/benchmark.py --only aug,inference --markdown  # README-ready table
    python tools/benchmark.py --json benchmark.json --pairs 9 --iters 5

Rows: augmentation images/s in one process (small photos and photo-size JPEGs; the config's
training pipeline vs the seed's torchvision chain), ResNeXt101 inference (tools/test.py's
BioClassifier vs a plain fp32 eval loop), the same in fp32 with oneDNN capped at AVX2 (a CPU
without AVX-512 or bfloat16), the exported ONNX file in fp32 and int8 through ONNX Runtime
(vs the plain fp32 loop; with --checkpoint also the int8/fp32 top-1 agreement on its val
images), training (the Runner vs a plain fp32 loop; on a GPU, `amp`, also vs the plain loop
with float16 autocast and loss scaling) and the Runner's overhead over a bare loop with the
Runner's own data, precision and memory format. Training rows say which share of the time
went to waiting for the loader. `--only layout` (not in the default run) sets BioClassifier's
two float32 CPU layouts against each other, uncapped and capped at AVX2. The CPU (vendor,
model, instruction sets) and the GPU head the table.

    python tools/benchmark.py --device cuda --only inference,training,amp,overhead \
        --batch-size 64 --num-workers 8 --markdown                # the GPU rows

Each side of a row runs --pairs times, each time in a fresh process (which reports its own
peak memory), in alternation with the side it is compared with. A row's ratio is the median
of the pairs' ratios, with a distribution-free 90 % interval (with 5 or 6 pairs, their
min–max); its verdict is PASS or FAIL only when the whole interval lies on one side of the
target, UNDECIDED: noise otherwise. Peak memory: the median of each side's processes. The
exit status is 0 even when a target is missed (FAIL and UNDECIDED rows are listed under the
table).
"""
import os.path as osp
import sys
import tempfile

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
import torch
from bioplugin.apis.cli import run_tool, tool_parser

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/benchmarking/
from benchmarking import (CASES, DEFAULT_CASES, BenchmarkSettings, failures,  # noqa: E402
                          format_markdown, format_text, run_benchmark, write_json)
from benchmarking.common import describe_cpu  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def image_size(text: str) -> tuple:
    """``'500x375'`` → ``(500, 375)`` (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split('x'))
    except ValueError:
        raise ValueError(f'expected WIDTHxHEIGHT, got {text!r}') from None
    return width, height


def parse_args(argv=None):
    defaults = BenchmarkSettings()
    parser = tool_parser(__doc__)
    parser.add_argument('--config', default=osp.join(REPO, defaults.config))
    parser.add_argument('--batch-size', type=int, default=defaults.batch_size,
                        help='inference and training batch size')
    parser.add_argument('--iters', type=int, default=defaults.iters,
                        help='timed training iterations; inference scores ITERS batches per '
                        'repetition')
    parser.add_argument('--warmup', type=int, default=defaults.warmup,
                        help='untimed images (augmentation), batches (inference) or '
                        'iterations (training) first')
    parser.add_argument('--repeats', type=int, default=defaults.repeats,
                        help='timed repetitions of augmentation and inference in each '
                        'process (its median)')
    parser.add_argument('--pairs', type=int, default=defaults.pairs,
                        help='fresh processes of each side of a row, alternating with the '
                        'other side (5 or more: a 90%% interval)')
    parser.add_argument('--num-workers', type=int, default=defaults.num_workers,
                        help='DataLoader workers of inference and training, both sides')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        help='cpu, cuda or cuda:N')
    parser.add_argument('--only', default=','.join(DEFAULT_CASES),
                        help=f'comma-separated subset of {",".join(CASES)} (default: '
                        '%(default)s)')
    parser.add_argument('--image-size', type=image_size, default=defaults.image_size,
                        metavar='WxH', help='the photos of augmentation (small), inference and '
                        'training (default: %(default)s)')
    parser.add_argument('--large-size', type=image_size, default=defaults.large_size,
                        metavar='WxH', help='photo-size JPEGs for augmentation (large)')
    parser.add_argument('--aug-images', type=int, default=defaults.aug_images,
                        help='small photos per augmentation repetition (a quarter as many '
                        'large ones)')
    parser.add_argument('--aug-threads', type=int, default=defaults.aug_threads,
                        help='torch/OpenCV threads of the augmentation case (1: as in a '
                        'DataLoader worker)')
    parser.add_argument('--checkpoint', help='ONNX rows: export this trained checkpoint of '
                        '--config (default: random weights) and check int8 on its val images')
    parser.add_argument('--data-root', help='with --checkpoint: its dataset (val images for the '
                        'agreement check, train images for int8 calibration)')
    parser.add_argument('--calibration-images', type=int, default=defaults.calibration_images,
                        help='training images the int8 file is calibrated on')
    parser.add_argument('--work-dir', help='keep the synthetic data, checkpoint and logs here '
                        '(default: a temporary folder, removed afterwards)')
    parser.add_argument('--json', metavar='FILE', help='also save the results as JSON')
    parser.add_argument('--markdown', action='store_true',
                        help='print the table as markdown instead of aligned text')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        settings = BenchmarkSettings(
            config=args.config, batch_size=args.batch_size, iters=args.iters,
            warmup=args.warmup, repeats=args.repeats, pairs=args.pairs,
            num_workers=args.num_workers,
            device=args.device, image_size=args.image_size, large_size=args.large_size,
            aug_images=args.aug_images, aug_threads=args.aug_threads,
            checkpoint=args.checkpoint, data_root=args.data_root,
            calibration_images=args.calibration_images,
            only=tuple(case.strip() for case in args.only.split(',') if case.strip()))
        if args.work_dir:
            report = run_benchmark(settings, args.work_dir)
        else:
            with tempfile.TemporaryDirectory(prefix='bio_benchmark_') as work_dir:
                report = run_benchmark(settings, work_dir)
        env = report['environment']
        print(f"\n{osp.basename(settings.config)} on {env['device']}, batch "
              f"{settings.batch_size}, {settings.num_workers} workers; ratio = ours / reference;"
              f" {settings.pairs} pairs; took {report['wall_s'] / 60:.1f} min; load average "
              f"{env['load_average_before']:.1f} → {env['load_average_after']:.1f}\n"
              f"CPU: {env['cpu']}, {env['cpu_count']} cores; "
              f"{describe_cpu(env['cpu_features'])}"
              + (f"\nGPU: {env['gpu']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}"
                 if 'gpu' in env else '') + '\n')
        rows = report['rows']
        print(format_markdown(rows) if args.markdown else format_text(rows))
        print('\n' + ('\n'.join(failures(rows)) or 'All targets met.'))
        if args.json:
            write_json(args.json, report)
            print(f'\nResults: {args.json}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
