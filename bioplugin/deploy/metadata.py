"""What an exported ONNX file says about itself: classes, input, preprocessing, temperature.

Stored as JSON under the ``bioplugin`` key of the model's ``metadata_props``, so a program
with only ONNX Runtime and numpy can prepare images and name its predictions::

    import json, onnxruntime
    session = onnxruntime.InferenceSession('model.onnx')
    meta = json.loads(session.get_modelmeta().custom_metadata_map['bioplugin'])
    meta['classes'], meta['input'], meta['preprocessing'], meta['temperature']

The graph takes ``input`` = RGB ``uint8`` images, ``(N, 3, height, width)``, already resized
and cropped as ``preprocessing`` lists; the normalisation is inside the graph. It returns
``logits``, ``scores`` (``softmax(logits / temperature)``) and the head's ``features``; a
checkpoint calibrated with its training features also gives ``unknown_score``, above
``meta['open_set']['threshold']`` for an image that is not one of the classes.
"""
import json
import warnings
from typing import Optional, Sequence

from ..errors import CheckpointError

METADATA_KEY = 'bioplugin'
FORMAT_VERSION = 1
INPUT_NAME = 'image'
OUTPUT_NAMES = ('logits', 'scores', 'features')
UNKNOWN_OUTPUT = 'unknown_score'
# pipeline steps that decode or pack an image and need no description
_LOADING_STEPS = {'BioLoadImage', 'LoadImageFromFile', 'PackInputs'}


def _size_pair(size) -> tuple:
    """MMCV's ``(width, height)`` from an int or a pair."""
    return (size, size) if isinstance(size, int) else tuple(size)


def describe_preprocessing(pipeline: Sequence[dict]) -> tuple:
    """``(steps, reproducible)``: the test pipeline's geometric steps as plain dicts
    (``resize_edge``, ``resize``, ``center_crop``) and whether they are all it does, i.e.
    whether a program without MMPretrain can prepare images as the config does."""
    steps, unknown = [], []
    for transform in pipeline:
        kind = transform.get('type')
        if kind in _LOADING_STEPS:
            continue
        if kind == 'ResizeEdge':
            steps.append(dict(op='resize_edge', edge=transform.get('edge', 'short'),
                              size=int(transform['scale']),
                              interpolation=transform.get('interpolation', 'bilinear')))
        elif kind == 'Resize' and not transform.get('keep_ratio', False):
            width, height = _size_pair(transform['scale'])
            steps.append(dict(op='resize', width=int(width), height=int(height),
                              interpolation=transform.get('interpolation', 'bilinear')))
        elif kind == 'CenterCrop':
            width, height = _size_pair(transform['crop_size'])
            steps.append(dict(op='center_crop', width=int(width), height=int(height)))
        else:
            unknown.append(str(kind))
    if unknown:
        warnings.warn(f'The test pipeline step(s) {", ".join(unknown)} cannot be described '
                      'in the ONNX metadata; programs without the config must not rely on '
                      'its preprocessing list.')
    return steps, not unknown


def build_metadata(classes: Sequence[str], height: int, width: int, pipeline: Sequence[dict],
                   mean: Sequence[float], std: Sequence[float],
                   temperature: Optional[float] = None, precision: str = 'fp32',
                   source: Optional[dict] = None, review: Optional[dict] = None,
                   outputs: Sequence[str] = OUTPUT_NAMES,
                   open_set: Optional[dict] = None) -> dict:
    """The metadata dict of an export (see the module docstring)."""
    from .. import __version__
    steps, reproducible = describe_preprocessing(pipeline)
    return dict(
        format=FORMAT_VERSION, producer=f'bioplugin {__version__}', classes=list(classes),
        input=dict(name=INPUT_NAME, dtype='uint8', layout='NCHW', color='RGB',
                   height=int(height), width=int(width)),
        outputs=list(outputs), preprocessing=steps,
        preprocessing_complete=reproducible,
        normalization=dict(mean=[float(v) for v in mean], std=[float(v) for v in std],
                           where='inside the graph, on RGB values 0-255'),
        temperature=float(temperature) if temperature else 1.0, precision=precision,
        source=dict(source or {}), review=review,
        open_set=None if open_set is None else {
            key: open_set[key] for key in ('threshold', 'known_rate', 'k', 'bank_images')})


def metadata_json(metadata: dict) -> str:
    return json.dumps(metadata, sort_keys=True)


def parse_metadata(custom_metadata: dict, path: str) -> dict:
    """The bioplugin metadata from an ONNX file's ``metadata_props`` map; one sentence when
    the file was not exported by bioplugin."""
    text = custom_metadata.get(METADATA_KEY)
    if text is None:
        raise CheckpointError(
            f'{path!r} has no bioplugin metadata (class names, input size, preprocessing); '
            'export it with tools/deploy/export_onnx.py CONFIG CHECKPOINT.')
    try:
        metadata = json.loads(text)
        metadata['classes'], metadata['input']['height']  # noqa: B018 (required keys)
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f'{path!r} has damaged bioplugin metadata; export it again '
                              'with tools/deploy/export_onnx.py.') from None
    if metadata.get('format', 0) > FORMAT_VERSION:
        raise CheckpointError(f'{path!r} was exported by a newer bioplugin (metadata format '
                              f'{metadata["format"]}); upgrade bioplugin to use it.')
    return metadata
