"""Check a dataset folder for files and folders that would break or surprise training.

    python tools/data/check_dataset.py data/bio
    python tools/data/check_dataset.py data/bio --workers 8 --out findings.csv --quiet

Every image of train/<class>/, val/<class>/ and test/ is read, probed and decoded exactly as
training reads it. Prints each error and warning (path, issue, message), a summary table
(issue × split) and a verdict; exits 1 when anything would break training, 0 otherwise.
Byte-identical files and resized / re-encoded / cropped copies (near-duplicates, similarity
of at least --near-threshold) are errors across splits (a leak) and warnings within one.
A long run prints a progress line on stderr at most every 30 s.
"""
import os
import sys

import bioplugin  # noqa: F401
from bioplugin.apis.cli import run_tool, tool_parser
from bioplugin.datasets.curation.doctor import (DEFAULT_MIN_SIZE, Progress, diagnose,
                                                format_findings, summary_table, verdict)
from bioplugin.datasets.curation.near_duplicates import THRESHOLD
from bioplugin.datasets.image_io import MAX_IMAGE_PIXELS
from bioplugin.evaluation import write_csv_atomic


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('data_root', help='folder with train/<class>/, val/<class>/ and test/')
    parser.add_argument('--workers', type=int, default=os.cpu_count() or 1,
                        help='processes checking images (default: one per CPU; 1: no pool)')
    parser.add_argument('--max-pixels', type=int, default=MAX_IMAGE_PIXELS,
                        help='images with more pixels are decompression bombs '
                        '(default: %(default)s)')
    parser.add_argument('--min-size', type=int, default=DEFAULT_MIN_SIZE,
                        help='warn about images whose shorter side is below this many pixels '
                        '(default: %(default)s; 0: never)')
    parser.add_argument('--near-threshold', type=float, default=THRESHOLD,
                        help='similarity (band-passed pixel correlation, 1 for a copy) from '
                        'which two images are near-duplicates (default: %(default)s; 0 or '
                        'less: no near-duplicate check)')
    parser.add_argument('--out', metavar='CSV', help='write every finding to this CSV')
    parser.add_argument('--quiet', action='store_true',
                        help='print only the summary table and the verdict')
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error('--workers must be at least 1')

    def body() -> int:
        diagnosis = diagnose(args.data_root, args.workers, args.max_pixels, args.min_size,
                             args.near_threshold if args.near_threshold > 0 else None,
                             Progress(lambda line: print(line, file=sys.stderr, flush=True)))
        if args.out:
            write_csv_atomic(diagnosis.findings, args.out)
        lines = [] if args.quiet else format_findings(diagnosis.findings)
        print('\n'.join(lines + ([''] if lines else [])
                        + [summary_table(diagnosis).to_string(), '', verdict(diagnosis)]))
        return 1 if diagnosis.failures else 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
