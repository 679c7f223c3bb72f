"""Evaluate a checkpoint, or write the prediction CSV for the unlabeled test folder.

    python tools/test.py CONFIG CHECKPOINT                          # metrics on val/
    python tools/test.py CONFIG CHECKPOINT --csv prediction.csv     # image_name,pred_label
    python tools/test.py CONFIG CHECKPOINT --csv prediction.csv --topk 3 --tta
    python tools/test.py CONFIG model.onnx --csv prediction.csv     # an exported model

CHECKPOINT may be an ONNX file from tools/deploy/export_onnx.py (fp32 or int8): the same
evaluation and CSV, computed by ONNX Runtime (or OpenVINO with --backend openvino).

Runs MMEngine's ``runner.test()`` on the chosen split with the ``PredictionWriter`` metric, as
MMPretrain's own tools/test.py does with the config's ``test_evaluator``.
"""
import sys

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.apis import build_test_config, load_config, prediction_writer, run_test
from bioplugin.apis.evaluate import model_file
from bioplugin.apis.cli import (add_config_options, add_precision_options, add_raw_names,
                                add_trust_checkpoint, precision_choice, run_tool, tool_parser)
from bioplugin.deploy import BACKENDS
from bioplugin.engine.distributed import LAUNCHERS
from bioplugin.evaluation import format_metrics
from mmengine.dist import is_main_process


def parse_args(argv=None):
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='a .pth written by tools/train.py, a work dir '
                        '(its best checkpoint), or an exported .onnx file')
    parser.add_argument('--csv', metavar='FILE',
                        help='write predictions of --split (default: test) to this CSV '
                        'instead of evaluating')
    parser.add_argument('--split', choices=('train', 'val', 'test'),
                        help='which split (default: val to evaluate, test with --csv)')
    parser.add_argument('--topk', type=int, default=1,
                        help='add the k best labels and scores per image')
    parser.add_argument('--class-names', metavar='FILE',
                        help='add readable names from a `label,name` CSV or a file with one '
                        'name per line in class order')
    parser.add_argument('--include-index', action='store_true',
                        help='add the internal class index column')
    parser.add_argument('--full-name', action='store_true',
                        help='with --csv: keep the file extension in image_name')
    parser.add_argument('--tta', action='store_true',
                        help='average scores over the image and its mirror (and any views of '
                        "the config's tta_pipeline)")
    parser.add_argument('--batch-size', type=int, help="images per batch (default: the "
                        "config's test_dataloader)")
    parser.add_argument('--num-workers', type=int, help='image decoding processes (default: '
                        "the config's)")
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='multi-process launcher (tools/dist_test.sh sets it)')
    parser.add_argument('--review-csv', metavar='FILE',
                        help="also write the rows whose decision is `review`, least certain "
                        'first (thresholds from tools/analysis/calibrate.py)')
    parser.add_argument('--taxonomy', metavar='CSV',
                        help='roll probabilities up the ranks of this file (class folder, '
                        'genus, family, …): <rank>_label/_score and confident_rank columns, '
                        'per-rank top-1 on a labeled split')
    parser.add_argument('--confident-threshold', type=float, default=0.9,
                        help='probability a rank needs to be the confident_rank (default: '
                        '%(default)s)')
    parser.add_argument('--unknown-label', metavar='NAME',
                        help='write NAME as pred_label of the images flagged unknown (not '
                        'one of the classes; threshold from tools/analysis/calibrate.py)')
    parser.add_argument('--adapt-priors', action='store_true',
                        help="each image's scores under the class mix its sample is estimated "
                        'to hold (EM; the priors go to <csv>.priors.json); needs the val '
                        'posteriors of tools/analysis/calibrate.py')
    parser.add_argument('--group-file', metavar='CSV',
                        help='with --adapt-priors: image,group rows; each group is a sample '
                        'with its own class mix (default: the whole split is one)')
    parser.add_argument('--raw-scores', action='store_true',
                        help="the model's own scores, without the calibration temperature of "
                        'tools/analysis/calibrate.py')
    parser.add_argument('--backend', choices=BACKENDS, default='onnxruntime',
                        help='what runs an .onnx model (default: %(default)s; openvino needs '
                        '`pip install openvino`)')
    add_raw_names(parser)
    add_precision_options(parser)
    add_trust_checkpoint(parser)
    add_config_options(parser)
    return parser.parse_args(argv)


def report_unreadable(frame) -> None:
    bad = frame[frame['status'] != 'ok'] if 'status' in frame else frame.iloc[:0]
    if len(bad):
        print(f'warning: {len(bad)} image(s) could not be read; their rows have an empty '
              'pred_label and the reason in the status column:', file=sys.stderr)
        for name, status in zip(bad.image_name, bad.status):
            print(f'  {name}: {status}', file=sys.stderr)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        if args.group_file and not args.adapt_priors:
            print('error: --group-file goes with --adapt-priors.', file=sys.stderr)
            return 2
        cfg = build_test_config(
            load_config(args.config, args.cfg_options, args.work_dir, args.data_root,
                        model_file=args.checkpoint),
            args.checkpoint, split=args.split, csv=args.csv, tta=args.tta, topk=args.topk,
            class_names=args.class_names, include_index=args.include_index,
            full_name=args.full_name, precision=precision_choice(args),
            batch_size=args.batch_size, num_workers=args.num_workers, launcher=args.launcher,
            backend=args.backend, raw_scores=args.raw_scores, review_csv=args.review_csv,
            taxonomy=args.taxonomy, confident_threshold=args.confident_threshold,
            unknown_label=args.unknown_label, raw_names=args.raw_names,
            adapt_priors=args.adapt_priors, group_file=args.group_file)
        runner, metrics = run_test(cfg, trust_checkpoint=args.trust_checkpoint)
        if not is_main_process():
            return 0
        writer = prediction_writer(runner)
        frame, split = writer.frame, cfg.test_evaluator.split
        if args.csv:
            print(f'Wrote {len(frame)} predictions to {args.csv}')
        else:
            print(f'\n{split} split, {model_file(cfg)}' + (' (TTA)' if args.tta else ''))
            print(format_metrics(metrics, len(frame)))
            print(f'Metrics: {writer.output_path(cfg.test_evaluator.metrics_file)}\n'
                  f'Per-image predictions: {writer.output_path(cfg.test_evaluator.out_file)}')
        if args.review_csv:
            if 'decision' in frame:
                queue = int((frame['decision'] == 'review').sum())
                print(f'Wrote the {queue} of {len(frame)} predictions to review to '
                      f'{args.review_csv}')
            else:
                print('warning: no review thresholds for these scores (run '
                      'tools/analysis/calibrate.py, and leave out --raw-scores); '
                      f'{args.review_csv} was not written', file=sys.stderr)
        if writer.temperature not in (None, 1.0):
            print(f'Scores calibrated with temperature {writer.temperature:.3f} '
                  '(tools/analysis/calibrate.py; --raw-scores for the model\'s own)')
        if 'unknown' in frame:
            print(f"{int(frame['unknown'].sum())} of {len(frame)} images flagged unknown (not "
                  f'one of the classes; unknown_score above {writer.unknown_threshold:.3f})')
        elif args.unknown_label:
            print(f'warning: no unknown threshold for {model_file(cfg)} (run '
                  'tools/analysis/calibrate.py on a val split of 20 images or more); '
                  '--unknown-label was not used', file=sys.stderr)
        if 'priors' in frame.attrs:
            print(f"Scores adapted to the class mix of {len(frame.attrs['priors']['groups'])} "
                  f'sample(s); estimated priors: {writer.priors_file()}')
        for warning in writer.warnings:
            print(f'warning: {warning}', file=sys.stderr)
        for note in writer.post_processor.notes():
            print(f'warning: {note}', file=sys.stderr)
        report_unreadable(frame)
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
