"""A whole training run on a small set: tools/train.py against a plain PyTorch loop, phase by
phase, each in a fresh process, side by side in one run.

    python tools/benchmark_small_run.py configs/bio_resnext50_plankton_cpu.py \
        --data-root data/plankton --epochs 5 --repeats 3

The plain loop (tools/benchmarking/plain_run.py) is the recipe written with torch and
torchvision only: the config's ResNet / ResNeXt and head, torchvision augmentation, AdamW,
plateau schedule, validation every epoch and the best weights saved. Both start from random
weights. The table gives the median seconds of start-up, training epochs, validation,
checkpoints and the end of the run (ours: the calibration of the best checkpoint).
"""
import json
import os.path as osp
import sys
import tempfile

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.apis.cli import run_tool, tool_parser
from bioplugin.engine.cpu_info import cpu_name

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # tools/benchmarking/
from benchmarking.common import cpu_features, describe_cpu  # noqa: E402
from benchmarking.small_run import compare_small_runs, format_phases  # noqa: E402


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('config')
    parser.add_argument('--data-root', required=True,
                        help='train/<class>/ and val/<class>/ folders')
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--batch-size', type=int, default=16)
    parser.add_argument('--num-workers', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=1,
                        help='runs of each side, alternating (median per phase)')
    parser.add_argument('--no-calibrate', action='store_true',
                        help='ours without the end-of-run calibration')
    parser.add_argument('--work-dir', help='keep both runs here (default: a temporary folder)')
    parser.add_argument('--json', metavar='FILE', help='also save the results as JSON')
    args = parser.parse_args(argv)

    def body() -> int:
        def measure(work_dir):
            return compare_small_runs(args.config, args.data_root, work_dir, args.epochs,
                                      args.batch_size, args.num_workers, args.repeats,
                                      not args.no_calibrate)
        if args.work_dir:
            report = measure(args.work_dir)
        else:
            with tempfile.TemporaryDirectory(prefix='bio_small_run_') as work_dir:
                report = measure(work_dir)
        print(f'\n{osp.basename(args.config)} on {args.data_root}, {args.epochs} epochs, '
              f'batch {args.batch_size}, {args.num_workers} workers, median of '
              f'{args.repeats}\nCPU: {cpu_name()}; '
              f'{describe_cpu(cpu_features())}\n')
        print(format_phases(report))
        if args.json:
            with open(args.json, 'w') as file:
                json.dump(report, file, indent=2)
            print(f'\nResults: {args.json}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
