"""Training curves of a work dir (stitched across --resume runs): one PNG and a CSV per epoch.

    python tools/analysis/curves.py work_dirs/bio_resnext
"""
import os.path as osp
import sys

import bioplugin  # noqa: F401
from bioplugin.analysis import load_training_curves, plot_training_curves, save_figure
from bioplugin.apis.cli import run_tool, tool_parser
from bioplugin.evaluation import write_csv_atomic


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('work_dir')
    parser.add_argument('--out-dir', help='default: <work_dir>/analysis')
    args = parser.parse_args(argv)

    def body() -> int:
        out_dir = args.out_dir or osp.join(args.work_dir, 'analysis')
        curves = load_training_curves(args.work_dir)
        png = save_figure(plot_training_curves(curves), osp.join(out_dir, 'training_curves.png'))
        csv = write_csv_atomic(curves.reset_index(), osp.join(out_dir, 'training_curves.csv'))
        print(f'{len(curves)} epochs: {png}, {csv}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
