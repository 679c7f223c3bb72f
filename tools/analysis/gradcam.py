"""Grad-CAM on the last backbone stage for a handful of images, as one image grid.

    python tools/analysis/gradcam.py CONFIG CHECKPOINT            # most confident val mistakes
    python tools/analysis/gradcam.py CONFIG CHECKPOINT --images a.jpg b.jpg
"""
import os.path as osp
import sys

import bioplugin  # noqa: F401
from bioplugin.analysis import explain_predictions, save_figure
from bioplugin.apis import BioClassifier, evaluate, load_config
from bioplugin.apis.cli import add_config_options, add_trust_checkpoint, run_tool, tool_parser


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('config')
    parser.add_argument('checkpoint', help='checkpoint file or work dir')
    parser.add_argument('--images', nargs='+', help='explain these images (default: the most '
                        'confident mistakes on val)')
    parser.add_argument('--count', type=int, default=8, help='how many val images')
    parser.add_argument('--out', help='PNG path (default: <work dir>/analysis/gradcam.png)')
    parser.add_argument('--device', help='cpu, cuda or cuda:N (default: cuda when present)')
    add_trust_checkpoint(parser)
    add_config_options(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.data_root)
        classifier = BioClassifier(cfg, args.checkpoint, device=args.device,
                                   trust_checkpoint=args.trust_checkpoint)
        out = args.out or osp.join(osp.dirname(classifier.checkpoint_path), 'analysis',
                                   'gradcam.png')
        if args.images:
            predictions = classifier.predict(args.images)
            predictions['image_path'] = args.images
            predictions['gt_label'] = '?'
        else:
            predictions = evaluate(cfg, classifier.checkpoint_path, 'val',
                                   out_dir=osp.dirname(osp.abspath(out)),
                                   trust_checkpoint=args.trust_checkpoint)['predictions']
        save_figure(explain_predictions(classifier, predictions, args.count), out)
        print(f'Grad-CAM grid: {out}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
