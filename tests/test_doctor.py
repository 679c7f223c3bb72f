import importlib.util
import os
import os.path as osp
import shutil
import sys
import tracemalloc

import cv2

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bioplugin.datasets.curation import doctor, near_duplicates
from bioplugin.datasets.image_io import BadImageError, decode_image, load_image, probe_image
from bioplugin.datasets.image_io import read_image_bytes
from bioplugin.errors import DatasetError

from bad_inputs import (BOMB_SIZE, LOADABLE, UNREADABLE, make_bad_image_folder,
                        make_structural_problem_folder)
from helpers import REPO, make_image_folder, run_tool

sys.path.insert(0, osp.join(REPO, 'tools', 'data'))  # the doctor benchmark's generators
from benchmark_doctor import texture, write_dataset  # noqa: E402
from near_duplicate_margin import copies_of  # noqa: E402

TOOL = 'tools/data/check_dataset.py'
# Issue codes the doctor must give each kind of file that bad_inputs writes.
EXPECTED_CODES = {
    'gray': {'grayscale'}, 'gray16': {'grayscale', 'high_bit_depth'},
    'rgba': {'alpha_dropped'}, 'palette': {'palette'}, 'rgb16': {'high_bit_depth'},
    'cmyk': {'cmyk'}, 'exif_rotated': {'exif_rotated'},
    'zero_byte': {'zero_byte'}, 'not_image': {'not_image'}, 'corrupt': {'corrupt'},
    'truncated_jpeg': {'truncated'}, 'truncated_png': {'truncated'},
    'bomb': {'decompression_bomb'},
    'tiny': {'tiny'}, 'duplicate': {'duplicate'}, 'ignored': {'ignored_file'},
}


@pytest.fixture(scope='module')
def bad(tmp_path_factory):
    return make_bad_image_folder(str(tmp_path_factory.mktemp('bad') / 'data'))


@pytest.fixture(scope='module')
def diagnosis(bad):
    return doctor.diagnose(bad['root'], workers=1)


def issues_by_path(findings: pd.DataFrame) -> dict:
    return findings.groupby('path').issue.agg(set).to_dict()


def relative(info: dict, path: str) -> str:
    return osp.relpath(path, info['root'])


def load_cli():
    spec = importlib.util.spec_from_file_location('check_dataset', osp.join(REPO, TOOL))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_kind_gets_exactly_its_issue_codes(bad, diagnosis):
    found = issues_by_path(diagnosis.findings)
    expected = {relative(bad, path): EXPECTED_CODES[kind]
                for kind, paths in bad['kinds'].items() for path in paths}
    assert found == expected  # and no finding for any good file
    assert set(bad['kinds']) == set(EXPECTED_CODES)
    assert all(len(bad['kinds'][kind]) == 2 for kind in LOADABLE + UNREADABLE)
    severities = dict(zip(diagnosis.findings.issue, diagnosis.findings.severity))
    assert severities == {issue: doctor.ISSUES[issue] for issue in severities}
    assert severities['truncated'] == 'error' and severities['tiny'] == 'warning'
    assert severities['cmyk'] == 'info'


def test_findings_carry_size_mode_and_messages(bad, diagnosis):
    rows = diagnosis.findings.set_index(['path', 'issue'])
    exif = rows.loc[(relative(bad, bad['kinds']['exif_rotated'][0]), 'exif_rotated')]
    assert (exif.width, exif.height, exif.split, exif['class']) == (64, 48, 'train', '0')
    assert 'orientation 6' in exif.message
    gray16 = rows.loc[(relative(bad, bad['kinds']['gray16'][1]), 'high_bit_depth')]
    assert (gray16['mode'], gray16.split, gray16['class']) == ('I;16', 'test', '')
    original, copy = (relative(bad, path) for path in bad['kinds']['duplicate'])
    assert rows.loc[(original, 'duplicate')].message == f'same bytes as {copy}'
    assert rows.loc[(original, 'duplicate')].hash == rows.loc[(copy, 'duplicate')].hash
    assert pd.isna(rows.loc[(relative(bad, bad['kinds']['zero_byte'][0]), 'zero_byte')].width)


def test_the_doctor_agrees_with_training(bad, diagnosis):
    """A file is an error exactly when the loader used by training refuses it."""
    failing = set(diagnosis.findings.path[diagnosis.findings.severity == 'error'])
    for path in diagnosis.files.path:
        full = osp.join(bad['root'], path)
        if path in failing:
            with pytest.raises(BadImageError):
                load_image(full)
        else:
            assert load_image(full).shape[2] == 3


def test_summary_counts_and_verdict(diagnosis):
    table = doctor.summary_table(diagnosis)
    assert table.loc['images scanned', ['train', 'val', 'test', 'total']].tolist() == [
        33, 6, 16, 55]
    assert table.loc['truncated', ['severity', 'train', 'val', 'test', 'total']].tolist() == [
        'error', 2, 0, 2, 4]
    assert table.loc['duplicate', ['train', 'test']].tolist() == [2, 0]
    assert table.loc['grayscale', 'total'] == 4 and table.loc['exif_rotated', 'total'] == 2
    assert list(table.index[1:]) == [issue for issue in doctor.ISSUES if issue in table.index]
    assert diagnosis.failures == 12  # 6 unreadable kinds, in train and in test
    assert doctor.verdict(diagnosis) == 'FAILED: 12 files/folders would break training'
    lines = doctor.format_findings(diagnosis.findings, ('error', ), limit=1)
    assert len(lines) == 5 * 2 and lines[1].split() == ['...', 'and', '1', 'more', 'zero_byte']
    assert lines[0].split()[:3] == ['ERROR', 'train/0/bad_zero_byte.jpg', 'zero_byte']


def test_cli_reports_errors_writes_csv_and_exits_1(bad, diagnosis, tmp_path):
    out = tmp_path / 'findings.csv'
    result = run_tool(TOOL, bad['root'], '--workers', '2', '--out', str(out))
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == 'FAILED: 12 files/folders would break training'
    errors = [line.split() for line in lines if line.startswith('ERROR')]
    assert {(words[1], words[2]) for words in errors} == {
        (path, issue) for path, issue, severity in zip(
            diagnosis.findings.path, diagnosis.findings.issue, diagnosis.findings.severity)
        if severity == 'error'}
    assert any(line.startswith('WARNING') and 'train/0/tiny.png' in line for line in lines)
    assert not any(line.startswith('INFO') for line in lines)
    assert any(line.split()[:2] == ['images', 'scanned'] for line in lines)
    assert result.stderr == ''  # a run this short shows no progress lines
    written = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert list(written.columns) == doctor.COLUMNS
    assert len(written) == len(diagnosis.findings)
    assert (written[['path', 'issue', 'severity']].values.tolist()
            == diagnosis.findings[['path', 'issue', 'severity']].values.tolist())


def test_cli_clean_folder_exits_0_and_quiet_prints_summary_only(tmp_path, capsys):
    root = make_image_folder(str(tmp_path / 'clean'), ['0', '1', '2'])
    assert load_cli().main([root, '--workers', '1']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == 'OK: 21 images, no problems that would break training'
    shutil.copyfile(osp.join(root, 'train', '0', 'img_0.jpg'),
                    osp.join(root, 'train', '0', 'img_0_copy.jpg'))
    assert load_cli().main([root, '--workers', '1', '--quiet']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ['severity', 'train', 'val', 'test', 'total']
    assert lines[-1] == 'OK: 22 images, no problems that would break training'
    assert not any(line.startswith('WARNING') for line in lines)


def test_missing_data_root_is_a_one_line_error_exit_2(tmp_path):
    result = run_tool(TOOL, str(tmp_path / 'nowhere'))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: Data root {str(tmp_path / 'nowhere')!r} does not exist or is not a folder."]
    assert result.stdout == ''


def test_missing_train_folder_raises_dataset_error(tmp_path):
    make_image_folder(str(tmp_path), ['0'])
    shutil.rmtree(tmp_path / 'train')
    with pytest.raises(DatasetError, match='has no train/ folder'):
        doctor.diagnose(str(tmp_path), workers=1)


def test_structural_problems(tmp_path):
    info = make_structural_problem_folder(str(tmp_path / 'data'))
    diagnosis = doctor.diagnose(info['root'], workers=1)
    assert issues_by_path(diagnosis.findings) == {
        relative(info, path): {kind} for kind, paths in info['kinds'].items() for path in paths}
    leak = diagnosis.findings[diagnosis.findings.issue == 'cross_split_duplicate']
    assert leak.split.tolist() == ['train', 'val', 'test']
    assert leak.message.iloc[0] == 'same bytes as val/0/leak.jpg, test/leak.jpg'
    assert set(diagnosis.findings.severity[diagnosis.findings.issue != 'ignored_folder']) == {
        'error'}
    assert diagnosis.failures == 7


def test_class_and_split_folders_missing(tmp_path):
    root = make_image_folder(str(tmp_path), ['0', '1', '2'])
    shutil.rmtree(osp.join(root, 'val', '2'))
    shutil.rmtree(osp.join(root, 'test'))
    found = doctor.diagnose(root, workers=1).findings
    assert found[['path', 'issue', 'severity']].values.tolist() == [
        ['val/2', 'class_missing_from_val', 'error'], ['test', 'missing_test', 'warning']]
    shutil.rmtree(osp.join(root, 'val'))
    found = doctor.diagnose(root, workers=1).findings
    assert found[['path', 'issue']].values.tolist() == [
        ['val', 'missing_val'], ['test', 'missing_test']]


def test_max_pixels_and_min_size_options(tmp_path):
    root = make_image_folder(str(tmp_path), ['0'], per_class=2, val_per_class=1, test_images=1)
    found = doctor.diagnose(root, workers=1, max_pixels=1000, min_size=0).findings
    assert set(found.issue) == {'decompression_bomb'} and len(found) == 4
    assert 'exceeds the limit of 1,000' in found.message.iloc[0]
    found = doctor.diagnose(root, workers=1, min_size=39).findings  # 36 px high ones
    assert found[['path', 'issue', 'width', 'height']].values.tolist() == [
        ['train/0/img_0.jpg', 'tiny', 44, 36], ['val/0/img_0.jpg', 'tiny', 44, 36]]


def test_one_or_two_workers_give_the_same_findings(bad, diagnosis):
    parallel = doctor.diagnose(bad['root'], workers=2)
    pd.testing.assert_frame_equal(parallel.findings, diagnosis.findings)
    pd.testing.assert_frame_equal(parallel.files, diagnosis.files)


def test_check_file_and_failure_classification(bad):
    good = doctor.check_file(bad['good'][0], 'train', '0')
    assert good.issues == () and good.width > 0 and len(good.digest) == 32 and not good.failed
    zero = doctor.check_file(bad['kinds']['zero_byte'][0], 'train', '0')
    assert zero.issues == (('zero_byte', 'zero-byte file'), ) and zero.failed
    assert doctor.image_signature(b'hello') is None
    assert doctor.image_signature(b'RIFF\0\0\0\0WEBPVP8 ') == 'WEBP'
    jpeg = read_image_bytes(bad['good'][0])
    assert doctor.failure_issue(jpeg[:100], 'x')[0] == 'truncated'
    assert doctor.failure_issue(jpeg, 'x')[0] == 'corrupt'
    assert doctor.failure_issue(b'', 'decompression bomb: big')[0] == 'decompression_bomb'


def test_loadable_kinds_decode_upright_as_3_channel_uint8(bad):
    assert set(bad['expected']) == {path for kind in LOADABLE for path in bad['kinds'][kind]}
    for path, expect in bad['expected'].items():
        data = read_image_bytes(path)
        header = probe_image(data, path)
        image = decode_image(data, path)
        width, height = expect['size']
        assert (header.width, header.height) == (width, height), path
        assert image.shape == (height, width, 3) and image.dtype == np.uint8, path
        top = image[:height // 2 - 2].reshape(-1, 3).mean(0)
        bottom = image[height // 2 + 2:].reshape(-1, 3).mean(0)
        assert np.abs(top - expect['top_colour']).max() <= expect['tolerance'], (path, top)
        assert np.abs(bottom - expect['colour']).max() <= expect['tolerance'], (path, bottom)


def test_fixture_files_are_what_they_claim(bad):
    kinds = bad['kinds']
    modes = {kind: Image.open(kinds[kind][0]).mode
             for kind in ('gray', 'gray16', 'rgba', 'palette', 'cmyk')}
    assert modes == dict(gray='L', gray16='I;16', rgba='RGBA', palette='P', cmyk='CMYK')
    with Image.open(kinds['exif_rotated'][0]) as stored:  # portrait pixels, landscape upright
        assert stored.size == (48, 64) and stored.getexif()[0x0112] == 6
    assert read_image_bytes(kinds['rgb16'][0])[24] == 16  # PNG bit depth
    assert osp.getsize(kinds['zero_byte'][0]) == 0
    with open(kinds['bomb'][0], 'rb') as file:
        header = file.read(24)
    assert (int.from_bytes(header[16:20], 'big'), int.from_bytes(header[20:24], 'big')) \
        == BOMB_SIZE
    assert len(set(bad['good'])) == 18 + 6 + 3 and not set(bad['good']) & set(bad['expected'])


# ---------------------------------------------------------------- near-duplicates

def specimen(seed: int, size=(150, 190)) -> np.ndarray:
    """A photo-like BGR image: smooth structure at several scales, different per seed."""
    rng = np.random.default_rng(seed)
    image = np.zeros((*size, 3), np.float32)
    for sigma, weight in ((12, 90), (4, 40), (1.5, 15)):
        noise = rng.normal(size=(*size, 3)).astype(np.float32)
        blurred = cv2.GaussianBlur(noise, (0, 0), sigma)
        image += weight * blurred / blurred.std()
    return np.clip(image + 128, 0, 255).astype(np.uint8)


def near_duplicate_folder(root):
    """Train images of two classes; val holds a half-size, a JPEG-quality-60 and a 5 %-cropped
    copy of three of them, and new images of the same classes."""
    originals = {}
    for label in ('0', '1'):
        for i in range(3):
            path = osp.join(root, 'train', label, f'img_{i}.png')
            originals[path] = specimen(seed=10 * int(label) + i)
            os.makedirs(osp.dirname(path), exist_ok=True)
            cv2.imwrite(path, originals[path])
    (half_of, jpeg_of, crop_of) = list(originals)[:3]
    copies = {}
    height, width = originals[half_of].shape[:2]
    copies[osp.join(root, 'val', '0', 'half.png')] = (
        half_of, cv2.resize(originals[half_of], (width // 2, height // 2),
                            interpolation=cv2.INTER_AREA))
    copies[osp.join(root, 'val', '0', 'jpeg.jpg')] = (jpeg_of, originals[jpeg_of])
    dy, dx = round(height * 0.05), round(width * 0.05)
    copies[osp.join(root, 'val', '0', 'crop.png')] = (crop_of, originals[crop_of][dy:, dx:])
    for path, (_, image) in copies.items():
        os.makedirs(osp.dirname(path), exist_ok=True)
        params = [cv2.IMWRITE_JPEG_QUALITY, 60] if path.endswith('.jpg') else []
        cv2.imwrite(path, image, params)
    for label in ('0', '1'):  # new images of the classes: not copies of anything
        path = osp.join(root, 'val', label, 'new.png')
        os.makedirs(osp.dirname(path), exist_ok=True)
        cv2.imwrite(path, specimen(seed=100 + int(label)))
    return {path: original for path, (original, _) in copies.items()}


def test_resized_reencoded_and_cropped_copies_across_splits_are_errors(tmp_path):
    copies = near_duplicate_folder(str(tmp_path))
    findings = doctor.diagnose(str(tmp_path), workers=1).findings
    leaks = findings[findings.issue == 'cross_split_near_duplicate']
    assert set(leaks.severity) == {'error'}
    found = {osp.join(str(tmp_path), path) for path in leaks.path}
    assert found == set(copies) | set(copies.values())  # each copy and its original, no others
    for copy, original in copies.items():
        message = leaks.message[leaks.path == osp.relpath(copy, str(tmp_path))].iloc[0]
        assert osp.relpath(original, str(tmp_path)) in message and 'similarity' in message
    assert not findings.path.str.endswith('new.png').any()


def test_near_duplicates_within_a_split_are_warnings_and_the_check_can_be_off(tmp_path):
    make_image_folder(str(tmp_path), ['0'], per_class=2, val_per_class=1, test_images=1)
    image = specimen(seed=3)
    cv2.imwrite(str(tmp_path / 'train' / '0' / 'a.png'), image)
    cv2.imwrite(str(tmp_path / 'train' / '0' / 'b.jpg'), image, [cv2.IMWRITE_JPEG_QUALITY, 60])
    findings = doctor.diagnose(str(tmp_path), workers=1).findings
    within = findings[findings.issue == 'near_duplicate']
    assert sorted(within.path) == ['train/0/a.png', 'train/0/b.jpg']
    assert set(within.severity) == {'warning'}
    off = doctor.diagnose(str(tmp_path), workers=1, near_threshold=None).findings
    assert not off.issue.str.contains('near_duplicate').any()


def test_distinct_specimens_that_look_alike_are_not_near_duplicates():
    """The plankton demo set: many near-identical dark blobs, no copies."""
    from plankton_demo import fetch_plankton_demo
    root = osp.join(REPO, 'data', 'plankton')
    fetch_plankton_demo(root)  # no-op once `make test` has fetched it
    findings = doctor.diagnose(root, workers=1).findings
    assert not findings.issue.str.contains('near_duplicate').any()


def test_margin_tool_puts_copies_above_and_distinct_images_below_the_threshold(tmp_path):
    from helpers import tool_main
    near_duplicate_folder(str(tmp_path))
    shutil.rmtree(tmp_path / 'val')  # originals only: every pair is distinct
    status, stdout, stderr = tool_main('data/near_duplicate_margin.py', str(tmp_path),
                                       '--copies', '3')
    assert status == 0, stderr
    highest = float(stdout.split('highest similarity ')[1].split()[0])
    lowest = [line.split('original ')[1].split(' (thumbnails ') for line in stdout.splitlines()
              if 'lowest' in line]  # verified, and the thumbnails' similarity in the search
    assert len(lowest) == 3 and highest < doctor.THRESHOLD < min(float(v) for v, _ in lowest)
    thumbnails = min(float(value.strip(')')) for _, value in lowest)
    assert thumbnails > near_duplicates.CANDIDATE  # copies stay candidates on 64 px previews


def full_comparison(previews, neighbours: int, threshold: float) -> set:
    """Candidate pairs from the whole N x N similarity matrix at once (what the block search
    must reproduce)."""
    crops = np.stack([near_duplicates.crop_thumbnails(preview) for preview in previews])
    count = len(previews)
    similarity = (crops.reshape(-1, crops.shape[2]) @ crops[:, 0].T).reshape(count, -1, count)
    similarity = similarity.max(1)
    similarity = np.maximum(similarity, similarity.T)
    np.fill_diagonal(similarity, -1)
    return {(min(i, int(j)), max(i, int(j))) for i in range(count)
            for j in np.argsort(-similarity[i])[:neighbours] if similarity[i, j] >= threshold}


def test_candidate_search_in_blocks_finds_the_pairs_of_the_full_comparison(monkeypatch):
    rng = np.random.default_rng(5)
    previews = [texture(rng) for _ in range(150)]
    for k in range(120):  # blends of two images: similarities spread over the whole range
        share = 0.5 + 0.45 * k / 120
        blend = share * previews[k].astype(np.float32) + (1 - share) * previews[k + 1]
        previews.append(blend.astype(np.uint8))
    previews += [near_duplicates.grey_preview(copy) for image in previews[:10]
                 for copy in copies_of(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)).values()]
    previews.append(np.full((40, 48), 128, np.uint8))  # flat: similar to nothing
    monkeypatch.setattr(near_duplicates, 'ROWS', 32)  # many blocks, and both ways of
    monkeypatch.setattr(near_duplicates, 'COLUMNS', 128)  # computing a block's similarities
    monkeypatch.setattr(near_duplicates, 'PENDING', 50)
    for neighbours, threshold in ((5, 0.8), (2, 0.5), (3, 0.0)):
        expected = full_comparison(previews, neighbours, threshold)
        assert len(expected) > 40
        assert near_duplicates.candidate_pairs(previews, neighbours, threshold) == sorted(
            expected), (neighbours, threshold)


@pytest.mark.slow
def test_near_duplicate_search_of_20000_images_finds_planted_copies_in_linear_memory():
    rng = np.random.default_rng(7)
    previews = [texture(rng) for _ in range(20000)]
    original_of = {}  # copy index -> original index
    for original in (0, 4321, 9999, 15000, 19999):
        image = cv2.cvtColor(previews[original], cv2.COLOR_GRAY2BGR)
        for copy in copies_of(image).values():  # half size, JPEG quality 60, 5 % cropped
            original_of[len(previews)] = original
            previews.append(near_duplicates.grey_preview(copy))
    tracemalloc.start()  # numpy reports its arrays to tracemalloc
    try:
        found = near_duplicates.near_duplicates(previews)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    pairs = {(first, second) for first, second, _ in found}
    assert {(original, copy) for copy, original in original_of.items()} <= pairs
    assert all(original_of.get(first, first) == original_of.get(second, second)
               for first, second in pairs)  # nothing but copies of one image
    # What the search keeps per image: its float32 thumbnail (1024 values) and its bound
    # coordinates (DIRECTIONS + 1 values), 4.3 KiB. Everything else is one block at a time,
    # whatever the number of images: the 19 crop thumbnails of 128 images (2432 x 1024
    # float32, 9.5 MiB) and two intermediates of that size, a 2432 x 2048 float32 tile of
    # bounds (19 MiB), or the 2048 thumbnails the directions are fitted on (16 MiB as float64,
    # an 8 MiB Gram matrix and its eigenvectors): about 30 MiB measured, 64 MiB allowed.
    # Comparing all pairs at once would take a 20015 x 20015 float32 matrix: 1.5 GiB.
    per_image = 4 * (near_duplicates.THUMBNAIL ** 2 + near_duplicates.DIRECTIONS + 1)
    bound = len(previews) * per_image + 64 * 2**20
    assert peak < bound, f'peak {peak / 2**20:.0f} MiB, bound {bound / 2**20:.0f} MiB'


def test_doctor_finds_planted_copies_among_generated_images_and_reports_progress(tmp_path):
    planted = write_dataset(str(tmp_path), images=1500, planted=4)
    lines = []
    findings = doctor.diagnose(str(tmp_path), workers=2,
                               progress=doctor.Progress(lines.append, seconds=0)).findings
    near = findings[findings.issue.str.contains('near_duplicate')]
    pairs = {tuple(sorted((path, message.split(' copy of ')[1].split(' (')[0])))
             for path, message in zip(near.path, near.message)}
    assert pairs >= {tuple(sorted(pair)) for pair in planted}
    original_of = {copy: original for original, copy in planted}
    assert all(original_of.get(first, first) == original_of.get(second, second)
               for first, second in pairs)  # nothing but copies of one image
    leaks = findings[findings.issue == 'cross_split_near_duplicate']
    assert set(leaks.path) == {path for pair in planted for path in pair}
    stages = {line.split(':')[0]: line for line in lines}  # the last line of each
    assert list(stages) == ['checking files', 'near-duplicate search, images',
                            'verifying near-duplicate candidates']
    assert stages['checking files'].startswith('checking files: 1,512 / 1,512 (')
    assert stages['near-duplicate search, images'].split(': ')[1].startswith('1,512 / 1,512 (')
