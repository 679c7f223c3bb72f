"""How many of each class a sample holds: class counts and proportions with intervals.

    python tools/analysis/abundance.py CONFIG CHECKPOINT --images tow_17/ --out abundance.csv
    python tools/analysis/abundance.py CONFIG CHECKPOINT --images traps/ --group-file weeks.csv \
        --method all --bootstrap 2000 --out abundance.csv

Counting predicted labels is biased by the classifier's confusions and by a sample whose
class mix is not the training set's; the default method corrects both with the
misclassification rates measured on the labeled val split (kept beside the checkpoint by
tools/analysis/calibrate.py). Writes the CSV (class,count,proportion,ci_low,ci_high; group
first with --group-file, method with --method all), a row of the images flagged unknown and
one of the unreadable images (counted apart), and a stacked-bar figure beside it.
"""
import os.path as osp
import sys

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.analysis.plots import plot_abundance, save_figure
from bioplugin.apis import BioClassifier, load_config
from bioplugin.apis.cli import (add_precision_options, add_raw_names, add_trust_checkpoint,
                                precision_choice, run_tool, tool_parser)
from bioplugin.evaluation import write_csv_atomic
from bioplugin.evaluation.abundance import ALL, format_abundance
from bioplugin.evaluation.quantification import DEFAULT_METHOD, LEVEL, METHODS


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='a .pth, a work dir (its best checkpoint) or an '
                        'exported .onnx file')
    parser.add_argument('--images', required=True, metavar='DIR',
                        help='the sample: a folder of images')
    parser.add_argument('--out', default='abundance.csv', help='the CSV (default: %(default)s)')
    parser.add_argument('--group-file', metavar='CSV',
                        help='image,group rows (sample, station, trap, date): one estimate '
                        'per group')
    parser.add_argument('--method', choices=METHODS + (ALL, ), default=DEFAULT_METHOD,
                        help='cc (count the labels), pcc (sum the scores), acc / pacc (the '
                        'same, adjusted by the val misclassification rates), em (the '
                        "sample's priors by expectation-maximisation), or all side by side "
                        '(default: %(default)s)')
    parser.add_argument('--bootstrap', type=int, default=1000,
                        help='bootstrap rounds of the intervals (default: %(default)s)')
    parser.add_argument('--level', type=float, default=LEVEL,
                        help='interval level (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='bootstrap seed')
    parser.add_argument('--figure', help='the stacked-bar figure (default: the CSV with .png)')
    parser.add_argument('--batch-size', type=int, help="default: the config's test batch size")
    parser.add_argument('--data-root', help="dataset folder (for the config's class list)")
    parser.add_argument('--backend', default='onnxruntime', help='what runs an .onnx model')
    add_raw_names(parser)
    add_precision_options(parser)
    add_trust_checkpoint(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        if args.bootstrap < 0 or not 0 < args.level < 1:
            print('error: --bootstrap must be 0 or more and --level in (0, 1).',
                  file=sys.stderr)
            return 2
        classifier = BioClassifier(load_config(args.config, data_root=args.data_root,
                                               model_file=args.checkpoint),
                                   args.checkpoint, precision=precision_choice(args),
                                   trust_checkpoint=args.trust_checkpoint,
                                   backend=args.backend)
        table = classifier.abundance(args.images, groups=args.group_file, method=args.method,
                                     bootstrap=args.bootstrap, seed=args.seed,
                                     level=args.level, batch_size=args.batch_size)
        for warning in table.attrs['warnings']:
            print(f'warning: {warning}', file=sys.stderr)
        write_csv_atomic(table, args.out, raw_names=args.raw_names)
        figure = save_figure(plot_abundance(table, args.level),
                             args.figure or osp.splitext(args.out)[0] + '.png')
        print(format_abundance(table))
        print(f'Abundance: {args.out}\nFigure: {figure}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
