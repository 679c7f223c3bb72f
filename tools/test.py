"""Evaluate a checkpoint, or write the prediction CSV for the unlabeled test folder.

    python tools/test.py CONFIG CHECKPOINT                          # metrics on val/
    python tools/test.py CONFIG CHECKPOINT --csv prediction.csv     # image_name,pred_label
    python tools/test.py CONFIG CHECKPOINT --csv prediction.csv --topk 3 --tta
"""
import sys

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.apis import BioClassifier, evaluate_to_files, load_config, predict_split
from bioplugin.apis.cli import (add_config_options, add_precision_options, add_trust_checkpoint,
                                precision_choice, run_tool, tool_parser)
from bioplugin.apis.distributed import LAUNCHERS, setup_distributed
from bioplugin.apis.evaluate import unreadable_rows
from mmengine.dist import is_main_process
from bioplugin.evaluation import format_metrics


def parse_args(argv=None):
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='a .pth written by tools/train.py, or a work dir '
                        '(its best checkpoint)')
    parser.add_argument('--csv', metavar='FILE',
                        help='write predictions of --split (default: test) to this CSV '
                        'instead of evaluating')
    parser.add_argument('--split', choices=('train', 'val', 'test'),
                        help='which split (default: val to evaluate, test with --csv)')
    parser.add_argument('--topk', type=int, default=1,
                        help='with --csv: add the k best labels and scores per image')
    parser.add_argument('--class-names', metavar='FILE',
                        help='with --csv: add readable names from a `label,name` CSV or a '
                        'file with one name per line in class order')
    parser.add_argument('--include-index', action='store_true',
                        help='with --csv: add the internal class index column')
    parser.add_argument('--full-name', action='store_true',
                        help='with --csv: keep the file extension in image_name')
    parser.add_argument('--tta', action='store_true',
                        help='average scores over the image and its mirror (and any views of '
                        "the config's tta_pipeline)")
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--num-workers', type=int, default=2, help='image decoding processes')
    parser.add_argument('--device', help='cpu, cuda or cuda:N (default: cuda when present)')
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='multi-process launcher (tools/dist_test.sh sets it)')
    add_precision_options(parser)
    add_trust_checkpoint(parser)
    add_config_options(parser)
    return parser.parse_args(argv)


def report_unreadable(frame) -> None:
    bad = unreadable_rows(frame)
    if len(bad):
        print(f'warning: {len(bad)} image(s) could not be read; their rows have an empty '
              'pred_label and the reason in the status column:', file=sys.stderr)
        for name, status in zip(bad.image_name, bad.status):
            print(f'  {name}: {status}', file=sys.stderr)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        setup_distributed(args.launcher)
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.data_root)
        classifier = BioClassifier(cfg, args.checkpoint, device=args.device, tta=args.tta,
                                   trust_checkpoint=args.trust_checkpoint,
                                   precision=precision_choice(args))
        loader_args = dict(batch_size=args.batch_size, num_workers=args.num_workers)
        if args.csv:
            frame = predict_split(classifier, args.split or 'test', args.csv, topk=args.topk,
                                  class_names=args.class_names,
                                  include_index=args.include_index,
                                  full_name=args.full_name, **loader_args)
            if is_main_process():
                print(f'Wrote {len(frame)} predictions to {args.csv}')
                report_unreadable(frame)
            return 0
        split = args.split or 'val'
        result = evaluate_to_files(classifier, cfg.work_dir, split, **loader_args)
        if not is_main_process():
            return 0
        print(f'\n{split} split, {classifier.checkpoint_path}' + (' (TTA)' if args.tta else ''))
        print(format_metrics(result['metrics'], len(result['predictions'])))
        report_unreadable(result['predictions'])
        print(f"Metrics: {result['metrics_file']}\n"
              f"Per-image predictions: {result['predictions_file']}")
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
