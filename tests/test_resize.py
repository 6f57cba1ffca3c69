"""Pre-resized copies: parallel, idempotent, following changes, resumed after a kill, never used stale, and used by
training when big enough."""
import json
import shutil

import pandas as pd
import pytest
from PIL import Image

from comp import competition, resize
from conftest import comp_cli


def test_resize_is_parallel_idempotent_and_follows_changes(tiny_copy, tmp_path):
    comp = competition.load(tiny_copy)
    path, n = resize.resize(128, comp, workdir=tmp_path, workers=2)
    n_images = len(comp.train_df()) + len(comp.test_ids())
    assert n == n_images
    some = next((path / 'train_images' / 'blast').iterdir())
    assert max(Image.open(some).size) == 128 and Image.open(some).size == (96, 128)
    assert (path / 'train.csv').read_text() == (tiny_copy / 'train.csv').read_text()
    assert resize.resize(128, comp, workdir=tmp_path)[1] == 0
    src = sorted((tiny_copy / 'train_images' / 'normal').iterdir())[0]
    Image.new('RGB', (480, 640), (10, 200, 10)).save(src)
    assert resize.resize(128, comp, workdir=tmp_path)[1] == 1
    assert Image.open(path / 'train_images' / 'normal' / src.name).getpixel((50, 50))[1] > 150
    competition.load(path)  # the copy is a valid competition in the same layout


@pytest.mark.slow
def test_train_uses_a_big_enough_resized_copy_and_says_so(workspace):
    comp = competition.find()
    resize.resize(64, comp, workdir=workspace)   # 48x64: too small for test_convnext's squish 96
    resize.resize(160, comp, workdir=workspace)  # 120x160: big enough
    r = comp_cli('train', '--arch', 'test_convnext', '--epochs', '1', '--workers', '0', cwd=workspace)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'using pre-resized images from' in r.stdout and 'resized/160' in r.stdout
    assert 'decode-once cache: ' in r.stdout
    run = workspace / r.stdout.split('run: ')[1].split()[0]
    said = r.stdout.split('decode-once cache: ')[1].splitlines()[0]
    assert json.loads((run / 'result.json').read_text())['decode_cache'] == said
    cfg = json.loads((run / 'config.json').read_text())
    assert cfg['images'].endswith('resized/160')
    r = comp_cli('predict', run.name, cwd=workspace)
    assert r.returncode == 0, r.stderr[-2000:]


def test_a_killed_resize_redoes_only_what_it_had_not_done(tiny_copy, tmp_path, monkeypatch):
    comp = competition.load(tiny_copy)
    last = sorted((tiny_copy / 'train_images' / 'tungro').iterdir())[-1]  # the last image resize does
    good = last.read_bytes()
    last.write_bytes(b'not a jpeg')  # resize dies on the last image, as if killed there
    monkeypatch.setattr(resize, 'CHUNK', 8)
    with pytest.raises(Exception): resize.resize(128, comp, workdir=tmp_path, workers=1)
    last.write_bytes(good)
    total = len(comp.train_df()) + len(comp.test_ids())
    _, n = resize.resize(128, comp, workdir=tmp_path, workers=1)
    assert n <= 8  # the last chunk only, not every image again
    assert not resize.stale(comp, resize.resized_path(tmp_path, 128)) and n < total


def test_a_stale_resized_copy_is_never_used(tiny_copy, tmp_path):
    from PIL import Image
    comp = competition.load(tiny_copy)
    path, _ = resize.resize(128, comp, workdir=tmp_path, workers=1)
    assert resize.usable(comp, tmp_path, (96, 96)) == path
    src = sorted((tiny_copy / 'train_images' / 'normal').iterdir())[0]
    Image.new('RGB', (480, 640), (10, 200, 10)).save(src)  # overwritten after `comp resize`
    notes = []
    assert resize.usable(comp, tmp_path, (96, 96), notes) is None
    assert src.name in notes[0] and 'comp resize --size 128' in notes[0]
    resize.resize(128, comp, workdir=tmp_path, workers=1)
    assert resize.usable(comp, tmp_path, (96, 96)) == path
    # An image moved to another label folder (train.csv following it) is not in the copy where training looks.
    df = pd.read_csv(tiny_copy / 'train.csv', dtype=str)
    i = df.index[df['label'] == 'blast'][0]
    moved = df.loc[i, 'image_id']
    shutil.move(tiny_copy / 'train_images' / 'blast' / moved, tiny_copy / 'train_images' / 'hispa' / moved)
    df.loc[i, 'label'] = 'hispa'
    df.to_csv(tiny_copy / 'train.csv', index=False)
    notes = []
    assert resize.usable(competition.load(tiny_copy), tmp_path, (96, 96), notes) is None and moved in notes[0]
