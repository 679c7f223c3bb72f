"""What every command-line tool shares: config options and one-line errors."""
import argparse
import sys
from typing import Callable

from mmengine.config import DictAction

from ..errors import BioPluginError


def tool_parser(doc: str) -> argparse.ArgumentParser:
    """An ArgumentParser whose help starts with the tool's usage docstring."""
    return argparse.ArgumentParser(description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--data-root`` and ``--cfg-options``, as every tool reads them."""
    parser.add_argument('--work-dir', help='where outputs go (default: work_dirs/<config name>)')
    parser.add_argument('--data-root', help='dataset folder with train/, val/ and test/ '
                        "(overrides the config's data_root)")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. optim_wrapper.optimizer.lr=5e-4')


def run_tool(body: Callable[[], int]) -> int:
    """Run a tool's body; a user error prints one ``error: …`` line and returns 2."""
    try:
        return body()
    except BioPluginError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
