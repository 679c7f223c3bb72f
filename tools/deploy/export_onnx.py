"""Export a trained classifier to ONNX (and int8), checked against PyTorch on real images.

    python tools/deploy/export_onnx.py CONFIG CHECKPOINT --out model.onnx
    python tools/deploy/export_onnx.py CONFIG WORK_DIR --out model.onnx --int8   # + model_int8.onnx

The file takes RGB uint8 images (N x 3 x H x W, resized and cropped as the config's test
pipeline does; the normalisation is inside the graph) and returns `logits` and `scores`.
Class names, input size, preprocessing and temperature are in its metadata. Exit status 1
when the check fails (logits beyond --tolerance, int8 agreement below --min-int8-agreement).
"""
import sys

import bioplugin  # noqa: F401  (first: registers components, quiets known import warnings)
from bioplugin.apis import load_config
from bioplugin.apis.cli import add_config_options, add_trust_checkpoint, run_tool, tool_parser
from bioplugin.deploy import export_onnx
from bioplugin.deploy.quantization import CALIBRATION_METHODS


def parse_args(argv=None):
    parser = tool_parser(__doc__)
    parser.add_argument('config', help='the config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='a .pth written by tools/train.py, or a work dir '
                        '(its best checkpoint)')
    parser.add_argument('--out', required=True, metavar='FILE.onnx', help='the fp32 ONNX file')
    parser.add_argument('--opset', type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument('--int8', action='store_true',
                        help='also write FILE_int8.onnx: static int8 (QDQ, per-channel weights) '
                        'calibrated on training images')
    parser.add_argument('--calibration-images', type=int, default=300,
                        help='training images to calibrate int8 on (default: %(default)s)')
    parser.add_argument('--calibration-method', choices=CALIBRATION_METHODS, default='minmax')
    parser.add_argument('--reduce-range', choices=('auto', 'on', 'off'), default='auto',
                        help='7-bit int8 weights, which x86 CPUs without VNNI need to avoid '
                        'saturation (default auto: on where this CPU lacks VNNI)')
    parser.add_argument('--check-images', type=int, default=100,
                        help='val images (train if no val) to compare on (default: %(default)s)')
    parser.add_argument('--tolerance', type=float, default=1e-3,
                        help='largest allowed |logit difference| fp32 ONNX vs PyTorch')
    parser.add_argument('--min-int8-agreement', type=float, default=0.95,
                        help='least top-1 agreement of int8 with fp32 (default: %(default)s)')
    parser.add_argument('--temperature', type=float,
                        help='softmax temperature of the `scores` output (default: the '
                        "checkpoint's calibration, else 1)")
    parser.add_argument('--raw-scores', action='store_true',
                        help="ignore the checkpoint's calibration temperature")
    add_trust_checkpoint(parser)
    add_config_options(parser)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)

    def body() -> int:
        for name in ('calibration_images', 'check_images'):
            if getattr(args, name) < 1:
                print(f'error: --{name.replace("_", "-")} must be at least 1.', file=sys.stderr)
                return 2
        cfg = load_config(args.config, args.cfg_options, args.work_dir, args.data_root)
        report = export_onnx(
            cfg, args.checkpoint, args.out, opset=args.opset, temperature=args.temperature,
            check_images=args.check_images, tolerance=args.tolerance, int8=args.int8,
            calibration_images=args.calibration_images,
            min_int8_agreement=args.min_int8_agreement,
            reduce_range=dict(auto=None, on=True, off=False)[args.reduce_range],
            calibration_method=args.calibration_method,
            trust_checkpoint=args.trust_checkpoint, raw_scores=args.raw_scores)
        if not report['passed']:
            print('error: the exported model does not match the checkpoint within the '
                  'tolerances above; the files are kept for inspection.', file=sys.stderr)
            return 1
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
