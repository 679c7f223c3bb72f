"""What every command-line tool shares: config options and one-line errors."""
import argparse
import os.path as osp
import sys
from typing import Callable, Optional

import torch
from mmengine.config import DictAction

from ..engine.console import set_console
from ..errors import BioPluginError
from ..fileio import DISK_FULL_ERRNOS, as_output_error


class ToolParser(argparse.ArgumentParser):
    """Every tool's parser: its help starts with the tool's usage docstring, and
    ``--verbose`` chooses the console (parsing sets it: a summary, or MMEngine's whole log;
    see :mod:`~bioplugin.engine.console`)."""

    def __init__(self, doc: str):
        super().__init__(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
        self.add_argument('--verbose', action='store_true',
                          help="MMEngine's whole log on the console (environment, config, "
                          'hooks, every few iterations); the log file in the work dir holds '
                          'it either way')

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        set_console('full' if parsed.verbose else 'summary')
        return parsed


def tool_parser(doc: str) -> ToolParser:
    return ToolParser(doc)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--data-root`` and ``--cfg-options``, as every tool reads them."""
    parser.add_argument('--work-dir', help='where outputs go (default: work_dirs/<config name>)')
    parser.add_argument('--data-root', help='dataset folder with train/, val/ and test/ '
                        "(overrides the config's data_root)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. optim_wrapper.optimizer.lr=5e-4')


def add_precision_options(parser: argparse.ArgumentParser) -> None:
    """``--amp`` / ``--fp32`` over the config's ``precision`` (default ``'auto'``: bfloat16 +
    channels_last on CPUs with native bfloat16 and on GPUs, float16 on older GPUs)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument('--amp', action='store_true',
                       help='force mixed precision (bfloat16 on CPU, bfloat16 or float16 on '
                       'GPU) even where the config would use float32')
    group.add_argument('--fp32', action='store_true',
                       help='force float32 (mixed precision is the default where the hardware '
                       'supports it)')


def precision_choice(args) -> Optional[str]:
    """The precision the flags ask for, or None to follow the config."""
    if args.fp32:
        return 'fp32'
    if args.amp:
        if torch.cuda.is_available():
            return 'bf16' if torch.cuda.is_bf16_supported() else 'fp16'
        return 'bf16'
    return None


def add_trust_checkpoint(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--trust-checkpoint', action='store_true',
                        help='allow a checkpoint that holds pickled Python objects besides '
                        'weights; only for files from a source you trust (unpickling can run '
                        'code)')


def add_raw_names(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--raw-names', action='store_true',
                        help="write class and file names into the CSVs exactly as they are; "
                        "by default a name a spreadsheet would run as a formula (starting "
                        "with =, +, -, @, a tab or a carriage return) gets a leading '")


def run_tool(body: Callable[[], int]) -> int:
    """Run a tool's body; a user error (or a full disk) prints one ``error: …`` line and
    returns 2."""
    try:
        return body()
    except BioPluginError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in DISK_FULL_ERRNOS:
            raise
        print(f'error: {as_output_error(error)}', file=sys.stderr)
        return 2


def add_prediction_source(parser: argparse.ArgumentParser) -> None:
    """Where an analysis tool gets val predictions: CONFIG CHECKPOINT (evaluated once) or a
    saved ``--predictions`` CSV; and ``--out-dir`` for its files."""
    parser.add_argument('config', nargs='?', help='config the checkpoint was trained with')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint file or work dir')
    parser.add_argument('--predictions', metavar='CSV',
                        help='predictions_val.csv from tools/test.py, instead of running the model')
    parser.add_argument('--out-dir', help='where the files go (default: analysis/ next to the '
                        'predictions or in the checkpoint\'s work dir)')
    add_trust_checkpoint(parser)
    add_config_options(parser)


def analysis_out_dir(args) -> str:
    """``--out-dir``, else ``analysis/`` beside the predictions file or the checkpoint."""
    if args.out_dir:
        return args.out_dir
    anchor = args.predictions or args.checkpoint or '.'
    folder = anchor if osp.isdir(anchor) else osp.dirname(anchor)
    return osp.join(folder, 'analysis')
