"""Confusion matrix, per-class accuracy and the most confused pairs of the val split.

    python tools/analysis/confusion_matrix.py CONFIG CHECKPOINT
    python tools/analysis/confusion_matrix.py --predictions work_dirs/run/predictions_val.csv

Writes confusion_matrix.png/.csv, per_class.png/.csv (accuracy, precision, recall, F1, support)
and confused_pairs.png/.csv (true → predicted, count, rate) into --out-dir.
"""
import os.path as osp
import sys

import bioplugin  # noqa: F401
from bioplugin.analysis import confusion_outputs
from bioplugin.analysis.predictions import predictions_for_analysis
from bioplugin.apis.cli import (add_prediction_source, add_raw_names, analysis_out_dir, run_tool,
                                tool_parser)


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    add_prediction_source(parser)
    parser.add_argument('--counts', action='store_true', help='plot counts, not row shares')
    parser.add_argument('--top-n', type=int, default=10, help='confused pairs to list')
    add_raw_names(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        frame, classes = predictions_for_analysis(
            args.predictions, args.config, args.checkpoint, args.cfg_options, args.data_root,
            args.trust_checkpoint)
        outputs = confusion_outputs(frame, classes, analysis_out_dir(args), args.top_n,
                                    normalize=not args.counts, raw_names=args.raw_names)
        print(f'{len(frame)} images, {len(classes)} classes; worst classes:')
        print(outputs['per_class'].head(5).to_string(index=False, float_format='%.2f'))
        print('\n'.join(['Wrote:'] + sorted(outputs['files'].values())))
        for key, note in sorted(outputs['notes'].items()):
            print(f"{osp.basename(outputs['files'][key])}: {note}")
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
