"""Fetch the plankton demo set (105 microscope images, 6 classes) into an ImageNet-style folder.

    python tools/data/fetch_plankton_demo.py data/plankton
    python tools/data/fetch_plankton_demo.py data/plankton --wheel .whl   # offline: a wheel
                                                                          # file or its folder
"""
import sys

import bioplugin  # noqa: F401
from bioplugin.apis.cli import run_tool, tool_parser
from plankton_demo import fetch_plankton_demo  # beside this script


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('destination', nargs='?', default='data/plankton')
    parser.add_argument('--cache-dir', help='where the downloaded wheel is kept '
                        '(default: data/downloads next to the destination)')
    parser.add_argument('--wheel', metavar='PATH', help='use this planktonclas-0.2.4 wheel, or '
                        'the one in this folder, instead of downloading it')
    args = parser.parse_args(argv)

    def body() -> int:
        counts = fetch_plankton_demo(args.destination, args.cache_dir, args.wheel)
        print(f'Plankton demo set in {args.destination}: '
              + ', '.join(f'{split} {count}' for split, count in counts.items()))
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
