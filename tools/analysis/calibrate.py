"""Fit the calibration temperature of a trained model on val, and show what it changes.

    python tools/analysis/calibrate.py work_dirs/bio_resnext        # its best checkpoint
    python tools/analysis/calibrate.py work_dirs/bio_resnext --checkpoint epoch_30.pth

Writes <checkpoint>.calibration.json beside the checkpoint: tools/test.py, BioClassifier and
tools/deploy/export_onnx.py then apply the temperature to every score (--raw-scores to opt
out) and add a `decision` column (accept / review) from the thresholds chosen here for
--target-precision, to hold on new images with --confidence. Prints ECE (10 bins), NLL
and Brier score before and after, estimated on held-out folds of val, and draws
calibration/reliability.png.

It also computes the training images' features once (<checkpoint>.features.npz) and the
threshold of the `unknown` column ("not one of my classes"): --known-rate of the val images
pass as known (see tools/analysis/open_set.py to measure it on images of other classes),
and keeps the val logits and labels (<checkpoint>.val_posteriors.npz) that
tools/analysis/abundance.py and tools/test.py --adapt-priors need.
"""
import sys

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.apis import calibrate_work_dir, format_calibration
from bioplugin.apis.cli import (add_precision_options, add_trust_checkpoint, precision_choice,
                                run_tool, tool_parser)


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('work_dir')
    parser.add_argument('--config', help='default: the config saved in the work dir')
    parser.add_argument('--checkpoint', help='default: the best checkpoint of the work dir')
    parser.add_argument('--folds', type=int, default=2,
                        help='cross-fitting folds of val for the before / after estimate')
    parser.add_argument('--target-precision', type=float, default=0.95,
                        help='precision the accepted predictions must reach on val (review '
                        'thresholds; default: %(default)s)')
    parser.add_argument('--confidence', type=float, default=0.9,
                        help='how sure the review thresholds must make it that the target '
                        'precision holds on new images (Clopper-Pearson, fixed-sequence '
                        'testing; default: %(default)s)')
    parser.add_argument('--known-rate', type=float, default=0.95,
                        help='share of known val images the unknown threshold passes '
                        '(default: %(default)s)')
    parser.add_argument('--neighbours', type=int, default=5,
                        help='k of the k-nearest-neighbour feature distance (default: '
                        '%(default)s)')
    parser.add_argument('--no-open-set', action='store_true',
                        help='skip the training features and the unknown threshold')
    parser.add_argument('--out-dir', help="default: calibration/ beside the checkpoint")
    parser.add_argument('--data-root', help="dataset folder with train/ and val/ (default: the "
                        "work dir's own)")
    add_precision_options(parser)
    add_trust_checkpoint(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        if not 0 < args.target_precision <= 1:
            print('error: --target-precision must be in (0, 1].', file=sys.stderr)
            return 2
        if not 0 < args.confidence < 1:
            print('error: --confidence must be in (0, 1).', file=sys.stderr)
            return 2
        if not 0 < args.known_rate < 1 or args.neighbours < 1:
            print('error: --known-rate must be in (0, 1) and --neighbours at least 1.',
                  file=sys.stderr)
            return 2
        if args.folds < 2:
            print('error: --folds must be at least 2 (fit on one part, score the other).',
                  file=sys.stderr)
            return 2
        record = calibrate_work_dir(args.work_dir, args.config, args.checkpoint, args.data_root,
                                    out_dir=args.out_dir, folds=args.folds,
                                    target_precision=args.target_precision,
                                    trust_checkpoint=args.trust_checkpoint,
                                    open_set=not args.no_open_set,
                                    known_rate=args.known_rate, neighbours=args.neighbours,
                                    confidence=args.confidence,
                                    precision=precision_choice(args))
        print(format_calibration(record))
        print(f"Calibration: {record['file']}" + (f"\nReliability diagram: {record['figure']}"
                                                  if record.get('figure') else ''))
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
