"""Predict with an exported model on a machine with only ONNX Runtime and numpy.

    python tools/deploy/predict_onnx.py model.onnx IMAGE_OR_FOLDER [...] [--csv out.csv]

Needs no PyTorch, MMEngine or bioplugin: the class names, input size and preprocessing are
read from the file's metadata (see bioplugin/deploy/metadata.py). Image files are decoded
with Pillow (upright by their EXIF orientation); `.npy` files holding RGB uint8 arrays are
read with numpy alone. Writes `image_name,pred_label,score` rows, the columns of
tools/test.py --csv, and `unknown` (True / False) when the file has an unknown threshold. Copy this file next to the model to embed it in another program.

Resizing is bilinear with OpenCV's pixel-centre convention, so scores match the config's
pipeline closely, not bit for bit (OpenCV rounds in fixed point; large JPEGs are decoded at
reduced size there).
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
import onnxruntime

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.npy')


def load_model(path):
    """``(session, metadata)`` of an exported file."""
    session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
    text = session.get_modelmeta().custom_metadata_map.get('bioplugin')
    if text is None:
        raise SystemExit(f'error: {path} has no bioplugin metadata; export it with '
                         'tools/deploy/export_onnx.py.')
    metadata = json.loads(text)
    if not metadata.get('preprocessing_complete', True):
        raise SystemExit(f'error: {path} was exported from a test pipeline this script cannot '
                         'reproduce; predict with tools/test.py and the config.')
    return session, metadata


def resize_bilinear(image, width, height):
    """``image`` (H x W x 3 uint8) resized to ``width`` x ``height``: bilinear, sampling
    at pixel centres (``(x + 0.5) * scale - 0.5``) as OpenCV's ``INTER_LINEAR`` does."""
    in_height, in_width = image.shape[:2]

    def axis(out_size, in_size):
        position = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
        position = np.clip(position, 0, in_size - 1)
        low = np.floor(position).astype(np.int64)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, (position - low).astype(np.float32)

    y0, y1, wy = axis(height, in_height)
    x0, x1, wx = axis(width, in_width)
    pixels = image.astype(np.float32)
    top = pixels[y0] * (1 - wy)[:, None, None] + pixels[y1] * wy[:, None, None]
    out = top[:, x0] * (1 - wx)[None, :, None] + top[:, x1] * wx[None, :, None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def preprocess(image, metadata):
    """An RGB uint8 image (H x W x 3) → the model's input (3 x H x W), as the metadata's
    ``preprocessing`` steps say."""
    for step in metadata['preprocessing']:
        height, width = image.shape[:2]
        if step['op'] == 'resize_edge':
            size, edge = step['size'], step['edge']
            if (edge == 'short' and width < height) or (edge == 'long' and width > height) \
                    or edge == 'width':
                image = resize_bilinear(image, size, int(size * height / width))
            else:
                image = resize_bilinear(image, int(size * width / height), size)
        elif step['op'] == 'resize':
            image = resize_bilinear(image, step['width'], step['height'])
        elif step['op'] == 'center_crop':
            crop_height, crop_width = min(step['height'], height), min(step['width'], width)
            top = max(0, int(round((height - crop_height) / 2.0)))
            left = max(0, int(round((width - crop_width) / 2.0)))
            image = image[top:top + crop_height, left:left + crop_width]
        else:
            raise SystemExit(f"error: unknown preprocessing step {step['op']!r}.")
    return np.ascontiguousarray(image.transpose(2, 0, 1))


def unknown_threshold(metadata):
    """The threshold of the ``unknown_score`` output, or None when the file has none."""
    if 'unknown_score' not in metadata.get('outputs', ()):
        return None
    return (metadata.get('open_set') or {}).get('threshold')


def predict(session, metadata, images, batch_size=16):
    """``(labels, scores, unknown)`` of RGB uint8 images: the best class, its probability, and
    whether the image looks like none of the classes (None without a threshold)."""
    threshold = unknown_threshold(metadata)
    outputs = ['scores'] + (['unknown_score'] if threshold is not None else [])
    labels, scores, unknown = [], [], []
    for start in range(0, len(images), batch_size):
        batch = np.stack([preprocess(image, metadata)
                          for image in images[start:start + batch_size]])
        results = session.run(outputs, {metadata['input']['name']: batch})
        labels += [metadata['classes'][i] for i in results[0].argmax(1)]
        scores += list(results[0].max(1))
        if threshold is not None:
            unknown += list(results[1] > threshold)
    return labels, scores, unknown if threshold is not None else None


def read_image(path):
    """An RGB uint8 array from an image file (Pillow) or a ``.npy`` file."""
    if path.lower().endswith('.npy'):
        return np.load(path)
    from PIL import Image, ImageOps
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert('RGB'))


def image_files(inputs):
    files = []
    for item in inputs:
        if os.path.isdir(item):
            files += sorted(os.path.join(item, name) for name in os.listdir(item)
                            if name.lower().endswith(IMAGE_SUFFIXES))
        else:
            files.append(item)
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('model', help='an .onnx file from tools/deploy/export_onnx.py')
    parser.add_argument('images', nargs='+', help='image files, .npy arrays or folders')
    parser.add_argument('--csv', help='write the rows here instead of printing them')
    parser.add_argument('--batch-size', type=int, default=16)
    args = parser.parse_args(argv)
    session, metadata = load_model(args.model)
    files = image_files(args.images)
    if not files:
        raise SystemExit('error: no images given.')
    labels, scores, unknown = predict(session, metadata, [read_image(f) for f in files],
                                      args.batch_size)
    out = open(args.csv, 'w', newline='') if args.csv else sys.stdout
    writer = csv.writer(out)
    writer.writerow(['image_name', 'pred_label', 'score'] + (['unknown'] if unknown else []))
    for i, (path, label, score) in enumerate(zip(files, labels, scores)):
        writer.writerow([os.path.splitext(os.path.basename(path))[0], label, f'{score:.6f}']
                        + ([bool(unknown[i])] if unknown else []))
    if args.csv:
        out.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
