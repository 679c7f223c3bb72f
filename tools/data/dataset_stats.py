"""Images per class of a dataset folder, as a text histogram with the imbalance ratio.

    python tools/data/dataset_stats.py data/bio
"""
import sys

import bioplugin  # noqa: F401
from bioplugin.apis.cli import run_tool, tool_parser
from bioplugin.datasets.class_balance import class_histogram, format_histogram
from bioplugin.evaluation import write_csv_atomic


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('data_root', help='folder with train/<class>/ (and val/<class>/)')
    parser.add_argument('--csv', help='also write the counts to this CSV')
    args = parser.parse_args(argv)

    def body() -> int:
        table = class_histogram(args.data_root)
        print(format_histogram(table))
        if args.csv:
            write_csv_atomic(table.reset_index(), args.csv)
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
