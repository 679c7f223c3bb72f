"""Precision choice: what 'auto' means on which hardware, and the flags that override it."""
import pytest
import torch

from bioplugin.apis import build_train_config
from bioplugin.apis.cli import add_precision_options, precision_choice, tool_parser
from bioplugin.engine import precision as precision_module
from bioplugin.engine.precision import cpu_has_native_bf16, resolve_precision
from bioplugin.errors import ConfigError
from conftest import RECIPE_CONFIG


@pytest.mark.parametrize('flags,expected', [
    ('fpu sse avx512f avx512_bf16 amx_tile', True),
    ('fpu sse avx2 avx512f avx512bw', False),   # AVX512 without bfloat16: emulated, slow
    ('fp asimd bf16 sve', True),                 # Arm 'Features' line
])
def test_native_bfloat16_is_read_from_the_cpu_flags(tmp_path, flags, expected):
    key = 'Features' if 'asimd' in flags else 'flags'
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text(f'processor\t: 0\n{key}\t\t: {flags}\n')
    assert cpu_has_native_bf16(str(cpuinfo)) is expected
    assert cpu_has_native_bf16(str(tmp_path / 'missing')) is False


def test_auto_follows_the_hardware(monkeypatch):
    monkeypatch.setattr(precision_module, 'cpu_has_native_bf16', lambda: True)
    assert resolve_precision('auto', 'cpu') == 'bf16'
    monkeypatch.setattr(precision_module, 'cpu_has_native_bf16', lambda: False)
    assert resolve_precision('auto', 'cpu') == 'fp32'
    assert build_train_config(RECIPE_CONFIG).precision == (
        'fp32' if not torch.cuda.is_available() else resolve_precision('auto', 'cuda'))
    assert resolve_precision('fp32', 'cpu') == 'fp32'
    with pytest.raises(ConfigError, match='float16 autocast needs a CUDA GPU'):
        resolve_precision('fp16', 'cpu')
    with pytest.raises(ConfigError, match="precision='half'"):
        resolve_precision('half', 'cpu')


def test_fp32_and_amp_flags_exclude_each_other():
    parser = tool_parser('x')
    add_precision_options(parser)
    assert precision_choice(parser.parse_args([])) is None
    assert precision_choice(parser.parse_args(['--fp32'])) == 'fp32'
    assert precision_choice(parser.parse_args(['--amp'])) in ('bf16', 'fp16')
    with pytest.raises(SystemExit):
        parser.parse_args(['--amp', '--fp32'])
