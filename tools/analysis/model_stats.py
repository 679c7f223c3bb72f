"""Parameters, FLOPs and the 100 M parameter budget of the model a config builds.

    python tools/analysis/model_stats.py configs/bio_resnext.py

Exits with status 1 when the model is over budget.
"""
import sys

import bioplugin  # noqa: F401
from bioplugin.analysis import format_model_stats, model_stats
from bioplugin.apis import load_config
from bioplugin.apis.cli import add_config_options, run_tool, tool_parser


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('config')
    parser.add_argument('--input-size', type=int, default=224, help='image side for FLOPs')
    parser.add_argument('--budget', type=float, default=100e6, help='parameter budget')
    add_config_options(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        stats = model_stats(load_config(args.config, args.cfg_options), args.input_size,
                            args.budget)
        print(format_model_stats(stats))
        return 0 if stats['within_budget'] else 1

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
