"""One-page HTML report of a run: metrics, curves, confusion matrix, per-class accuracy,
confused pairs, score calibration, the review queue's risk and coverage, the unknown flag, an
error gallery, Grad-CAM, model size and the val misclassification rates that abundance
estimates are adjusted with (with --abundance-images, a sample's abundance table), with every
figure and table beside it.

    python tools/analysis/report.py work_dirs/bio_resnext          # → work_dirs/bio_resnext/report/
    python tools/analysis/report.py work_dirs/bio_resnext --taxonomy taxonomy.csv --rank family
"""
import sys

import bioplugin  # noqa: F401
from bioplugin.analysis import write_report
from bioplugin.apis.cli import add_raw_names, add_trust_checkpoint, run_tool, tool_parser


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('work_dir')
    parser.add_argument('--config', help='default: the config saved in the work dir')
    parser.add_argument('--checkpoint', help='default: the best checkpoint of the work dir')
    parser.add_argument('--out-dir', help='default: <work_dir>/report')
    parser.add_argument('--device', help='cpu, cuda or cuda:N (default: cuda when present)')
    parser.add_argument('--gradcam-images', type=int, default=8)
    parser.add_argument('--gallery-images', type=int, default=16,
                        help='misclassified val images in the error gallery')
    parser.add_argument('--taxonomy', metavar='CSV', help='per-rank top-1 and a confusion '
                        'matrix at --rank (the file of tools/test.py --taxonomy)')
    parser.add_argument('--rank', help='rank of the confusion matrix (default: the one above '
                        'the classes)')
    parser.add_argument('--data-root', help="dataset folder with val/ (default: the work dir's "
                        'own, resolved against the folder its training was started from)')
    parser.add_argument('--abundance-images', metavar='DIR',
                        help="a sample's folder: add its abundance table and figure")
    add_raw_names(parser)
    add_trust_checkpoint(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        path = write_report(args.work_dir, args.config, args.checkpoint, args.out_dir,
                            args.device, args.gradcam_images,
                            trust_checkpoint=args.trust_checkpoint,
                            gallery_images=args.gallery_images, taxonomy=args.taxonomy,
                            rank=args.rank, data_root=args.data_root,
                            raw_names=args.raw_names,
                            abundance_images=args.abundance_images)
        print(f'Report: {path}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
