"""Turn a torchvision (or MMPretrain) ImageNet checkpoint into an MMPretrain backbone checkpoint.

    python tools/convert_weights.py resnext101_32x8d-110c445d.pth resnext101_backbone.pth
    python tools/convert_weights.py torchvision_v2 resnext101_backbone.pth   # download first

The weights are checked against the backbone of --config (default configs/bio_resnext.py):
every backbone tensor must be present with its shape. The output loads with
`init_cfg=dict(type='Pretrained', checkpoint='resnext101_backbone.pth', prefix='backbone')`.
"""
import sys

import bioplugin  # noqa: F401
from bioplugin.apis import load_config
from bioplugin.apis.cli import run_tool, tool_parser
from bioplugin.engine.pretrained import KNOWN_CHECKPOINTS, local_checkpoint
from bioplugin.engine.weight_conversion import (checked_backbone_weights, describe,
                                                save_backbone_checkpoint)


def main(argv=None) -> int:
    parser = tool_parser(__doc__)
    parser.add_argument('source', help='checkpoint file, URL, or one of '
                        + ', '.join(KNOWN_CHECKPOINTS))
    parser.add_argument('destination', help='the MMPretrain-style backbone checkpoint to write')
    parser.add_argument('--config', default='configs/bio_resnext.py',
                        help='config whose backbone the weights must fit')
    args = parser.parse_args(argv)

    def body() -> int:
        backbone_cfg = load_config(args.config).model.backbone
        source = local_checkpoint(args.source, key='model.backbone.init_cfg')
        weights, report = checked_backbone_weights(source, backbone_cfg)
        save_backbone_checkpoint(weights, report, source, args.destination)
        print(f'{source} ({describe(report)})\nWrote {args.destination}')
        return 0

    return run_tool(body)


if __name__ == '__main__':
    sys.exit(main())
