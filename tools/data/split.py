"""Split a folder of labeled images into train/ and val/, stratified and optionally grouped.

    python tools/data/split.py photos/ data/bio --val-fraction 0.2
    python tools/data/split.py photos/ data/bio --val-fraction 0.2 --group-file groups.csv

SOURCE holds one folder per class (or already train/ and val/, which are pooled and split
again). OUT gets train/<class>/ and val/<class>/ of links to the images (--copy: copies); each
class is split in the same proportion and, with --group-file (image,group rows: specimen,
site, date), the images of one group land on one side only — the leak a random split makes.
"""
import os.path as osp
import sys

import bioplugin  # noqa: F401
from bioplugin.apis.cli import run_tool, tool_parser
from bioplugin.datasets.curation.folds import (assign_folds, fold_shares, labeled_images,
                                               read_groups, write_split)
from bioplugin.errors import DatasetError


def source_images(source: str):
    """The labeled images of SOURCE: its train/ and val/ pooled, or its class folders."""
    if osp.isdir(osp.join(source, 'train')):
        return labeled_images(source)
    return labeled_images(source, splits=('.', ))


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('source', help='class folders (or train/ and val/) of labeled images')
    parser.add_argument('out', help='where train/ and val/ are written')
    parser.add_argument('--val-fraction', type=float, default=0.2,
                        help='share of each class held out (default: %(default)s)')
    parser.add_argument('--group-file', metavar='CSV')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--copy', action='store_true', help='copy the files instead of linking')
    args = parser.parse_args(argv)

    def body() -> int:
        if not 0 < args.val_fraction <= 0.5:
            raise DatasetError('--val-fraction must be in (0, 0.5].')
        images = source_images(args.source)
        groups = read_groups(args.group_file, images) if args.group_file else None
        folds = max(2, round(1 / args.val_fraction))
        fold_of = assign_folds(images.label, folds, groups, args.seed)
        write_split(images, fold_of == 0, args.out, copy=args.copy)
        shares = fold_shares(images, (fold_of == 0).astype(int)).rename(
            columns={0: 'train', 1: 'val'})
        print(shares.to_string())
        print(f'Wrote {args.out}/train and {args.out}/val ({(fold_of == 0).sum()} val images '
              f'of {len(images)})')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
