"""How well the `unknown` flag tells images of classes the model never saw from its own.

    python tools/analysis/open_set.py CONFIG CHECKPOINT --unknown-dir DIR

DIR holds images of other classes (or one sub-folder per such class); the val split is the
known side. Prints AUROC and the false-positive rate at 95 % true-positive rate (the share of
unknown images that pass as known when 95 % of known images do) for the max softmax score,
the energy of the logits, the kNN feature distance and their combination, the unknown score
of the `unknown` column. The threshold comes from tools/analysis/calibrate.py.
"""
import sys

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.analysis.unknown_detection import format_open_set, measure_open_set
from bioplugin.apis import load_config
from bioplugin.apis.cli import (add_config_options, add_raw_names, add_trust_checkpoint, run_tool,
                                tool_parser)


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='checkpoint file or work dir (its best checkpoint)')
    parser.add_argument('--unknown-dir', required=True,
                        help='images of classes the model was not trained on')
    parser.add_argument('--out-dir', help='where the per-image CSVs go (default: open_set/ '
                        'beside the checkpoint)')
    add_raw_names(parser)
    add_trust_checkpoint(parser)
    add_config_options(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.data_root)
        result = measure_open_set(cfg, args.checkpoint, args.unknown_dir, args.out_dir,
                                  trust_checkpoint=args.trust_checkpoint,
                                  raw_names=args.raw_names)
        print(format_open_set(result))
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
