"""Exported models: ONNX export and int8 quantization, and the runtimes that run them."""
from .export import ExportableClassifier, export_onnx
from .metadata import METADATA_KEY, parse_metadata
from .onnx_classifier import OnnxClassifier
from .quantization import quantize_int8
from .runtimes import BACKENDS, is_onnx_file, open_runtime

__all__ = ['BACKENDS', 'ExportableClassifier', 'METADATA_KEY', 'OnnxClassifier',
           'export_onnx', 'is_onnx_file', 'open_runtime', 'parse_metadata', 'quantize_int8']
