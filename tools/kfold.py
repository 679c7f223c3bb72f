"""K-fold cross-validation of a config on the labeled images (train + val) of a data root.

    python tools/kfold.py configs/bio_resnext.py --folds 5
    python tools/kfold.py configs/bio_resnext.py --folds 5 --seeds 0 1 2 --group-file groups.csv

Folds are stratified (each class spread evenly); with --group-file (a CSV of image, group:
specimen, site, date) the images of one group never straddle folds. Every seed x fold is a
normal training run in <work dir>/seed_<s>/fold_<k>/, evaluated on the fold's held-out images;
the table and <work dir>/kfold_summary.json give mean ± std of top-1, macro F1, per-class
recall and training seconds. Run the same command again after a stop: finished runs are kept,
an interrupted one continues from its latest checkpoint.
"""
import os.path as osp
import sys

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.apis.cli import add_config_options, run_tool, tool_parser
from bioplugin.apis.config import load_config
from bioplugin.apis.kfold import format_summary, run_kfold


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('config')
    parser.add_argument('--folds', type=int, default=5, help='K (default: %(default)s)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='training seeds; every fold is trained once per seed')
    parser.add_argument('--group-file', metavar='CSV', help='image,group rows: images of one '
                        'group stay in one fold')
    parser.add_argument('--split-seed', type=int, default=0,
                        help='seed of the assignment to folds (the same folds for every '
                        'training seed and recipe; default: %(default)s)')
    add_config_options(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        cfg = load_config(args.config, args.cfg_options, data_root=args.data_root)
        parent = args.work_dir or osp.join(
            'work_dirs', osp.splitext(osp.basename(args.config))[0] + f'_kfold{args.folds}')
        summary = run_kfold(args.config, cfg.data_root, parent, args.folds, args.seeds,
                            args.group_file, args.cfg_options, args.split_seed)
        print(format_summary(summary))
        print(f'Summary: {osp.join(parent, "kfold_summary.json")}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
