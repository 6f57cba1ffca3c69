"""Issue 5's data path: pre-resized copies and the decode-once cache, checked against fastai's own pipeline."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from comp import competition, data, resize
from conftest import comp_cli


def batches(dls, n_epochs=2):
    out = []
    for _ in range(n_epochs):
        for xb, yb in dls.train: out.append((xb.clone(), yb.clone()))
    for xb, yb in dls.valid: out.append((xb.clone(), yb.clone()))
    return out


@pytest.mark.parametrize('method', ['squish', 'pad', 'crop'])
def test_cached_batches_equal_uncached(tiny_sample, tmp_path, method):
    # The item resize has the portrait photos' aspect (w/h = 3/4): for pad and crop every placement of those
    # gives the same pixels, while fastai places the landscape ones at random in training.
    from fastai.vision.all import set_seed
    comp = competition.load(tiny_sample)
    valid = data.valid_ids(comp, tmp_path)
    kw = dict(size=(48, 48), resize=(method, (64, 48)), bs=8, workers=0, seed=1)
    set_seed(1)
    plain = data.dataloaders(comp, valid, cache=False, **kw)
    set_seed(1)
    ref = batches(plain)
    set_seed(1)
    cached = data.dataloaders(comp, valid, cache=True, **kw)
    set_seed(1)
    got = batches(cached)
    assert len(ref) == len(got)
    for (a, ya), (b, yb) in zip(ref, got):
        assert torch.equal(ya, yb) and torch.equal(a, b)
    df = comp.train_df()
    wide = [Image.open(comp.path / f).size[0] > Image.open(comp.path / f).size[1] for f in df['path']]
    wide_train = sum(w for w, i in zip(wide, df[comp.layout.id_col]) if i not in valid)
    assert wide_train > 0
    # Two epochs of training and one of validation, yet each image was decoded once, except that
    # landscape training images are placed anew by fastai in each epoch of a pad or crop resize.
    assert cache_tfm(cached).decodes_count == len(df) + (wide_train if method != 'squish' else 0)


def cache_tfm(dls):
    return data.cache_of(dls.train.dataset)


def test_the_cache_goes_where_there_is_room_or_is_left_off(tiny_sample, tmp_path, monkeypatch):
    comp = competition.load(tiny_sample)
    kw = dict(size=(48, 48), resize=('squish', (64, 48)), bs=8, workers=0)
    valid = data.valid_ids(comp, tmp_path)
    (tmp_path / 'cache').mkdir()
    monkeypatch.setenv('COMP_CACHE_DIR', str(tmp_path / 'cache'))
    dls = data.dataloaders(comp, valid, **kw)
    assert Path(cache_tfm(dls).file).parent == tmp_path / 'cache'
    assert dls.decode_cache.endswith(f'in {tmp_path / "cache"}')
    assert data.decode_cache_dir(shutil.disk_usage(tmp_path).free * 2) is None
    # over the budget: off, and it says which setting to change
    monkeypatch.setenv('COMP_CACHE_GB', '0.0001')
    dls = data.dataloaders(comp, valid, **kw)
    assert cache_tfm(dls) is None and 'over the' in dls.decode_cache and 'COMP_CACHE_GB' in dls.decode_cache
    monkeypatch.delenv('COMP_CACHE_GB')
    # a folder that cannot hold the cache: the plain pipeline, which still delivers batches
    monkeypatch.setenv('COMP_CACHE_DIR', str(tmp_path / 'missing'))
    dls = data.dataloaders(comp, valid, **kw)
    assert cache_tfm(dls) is None and dls.decode_cache.startswith('off: no room')
    xb, yb = dls.one_batch()
    assert xb.shape == (8, 3, 48, 48)

def test_resize_is_parallel_idempotent_and_follows_changes(tiny_copy, tmp_path):
    comp = competition.load(tiny_copy)
    path, n = resize.resize(comp, 128, workdir=tmp_path, workers=2)
    n_images = len(comp.train_df()) + len(comp.test_ids())
    assert n == n_images
    some = next((path / 'train_images' / 'blast').iterdir())
    assert max(Image.open(some).size) == 128 and Image.open(some).size == (96, 128)
    assert (path / 'train.csv').read_text() == (tiny_copy / 'train.csv').read_text()
    assert resize.resize(comp, 128, workdir=tmp_path)[1] == 0
    src = sorted((tiny_copy / 'train_images' / 'normal').iterdir())[0]
    Image.new('RGB', (480, 640), (10, 200, 10)).save(src)
    assert resize.resize(comp, 128, workdir=tmp_path)[1] == 1
    assert Image.open(path / 'train_images' / 'normal' / src.name).getpixel((50, 50))[1] > 150
    competition.load(path)  # the copy is a valid competition in the same layout


@pytest.mark.slow
def test_train_uses_a_big_enough_resized_copy_and_says_so(workspace):
    comp = competition.find()
    resize.resize(comp, 64, workdir=workspace)   # 48x64: too small for test_convnext's squish 96
    resize.resize(comp, 160, workdir=workspace)  # 120x160: big enough
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


def test_workers_follow_the_cores_this_process_may_use():
    # Kaggle and `taskset` give a process fewer cores than the host has; os.cpu_count() still counts the host's.
    code = ('import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); '
            'from comp import data, runs; print(data.num_workers(), runs.environment()["cpu_count"])')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ['1', '1']
    assert data.num_workers(3) == 3


def test_a_finished_run_gives_its_cache_back(workspace, tmp_path, monkeypatch):
    # A notebook trains several archs in one process; fastai's reference cycles would keep each run's cache
    # in /dev/shm (memory) until the garbage collector happened to run.
    from comp import train
    (tmp_path / 'cache').mkdir()
    monkeypatch.setenv('COMP_CACHE_DIR', str(tmp_path / 'cache'))
    run = train.train(train.TrainConfig(arch='test_convnext', epochs=1, workers=0), quiet=True)
    assert json.loads((run / 'result.json').read_text())['decode_cache'].endswith(str(tmp_path / 'cache'))
    assert list((tmp_path / 'cache').iterdir()) == []


def test_caches_of_ended_processes_are_removed(tiny_sample, tmp_path):
    cache = tmp_path / 'cache'
    cache.mkdir()
    gone = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True,
                          text=True, check=True).stdout.strip()
    (cache / f'comp-cache-{gone}-killed.u8').write_bytes(b'x')      # a run killed before it could clean up
    (cache / f'comp-cache-{os.getpid()}-mine.u8').write_bytes(b'x')  # a live process's cache
    # exits without releasing the cache, the learner's cycles still holding it
    code = ('import sys; from comp import competition, data; comp = competition.load(sys.argv[1]); '
            'dls = data.dataloaders(comp, data.valid_ids(comp, sys.argv[2]), (48, 48), ("squish", (64, 48)), bs=8, workers=0); '
            'dls.one_batch(); print(data.cache_of(dls.train.dataset).file)')
    r = subprocess.run([sys.executable, '-c', code, str(tiny_sample), str(tmp_path)], capture_output=True, text=True,
                       env={**os.environ, 'COMP_CACHE_DIR': str(cache)})
    assert r.returncode == 0, r.stderr[-2000:]
    made = Path(r.stdout.strip().splitlines()[-1])
    assert made.parent == cache and not made.exists()
    assert sorted(f.name for f in cache.iterdir()) == [f'comp-cache-{os.getpid()}-mine.u8']


def test_a_pickled_cache_maps_the_same_files(tiny_sample, tmp_path):
    # spawn and forkserver workers receive the transform pickled: they must share the pixels, not copy them
    import pickle
    comp = competition.load(tiny_sample)
    dls = data.dataloaders(comp, data.valid_ids(comp, tmp_path), (48, 48), ('squish', (64, 48)), bs=8, workers=0)
    tfm = cache_tfm(dls)
    a, b = list(tfm.index)[:2]
    ta = tfm(a, split_idx=0)
    twin = pickle.loads(pickle.dumps(tfm))
    n = twin.decodes_count
    assert torch.equal(twin(a, split_idx=0), ta) and twin.decodes_count == n   # read from the shared file
    tb = twin(b, split_idx=0)                                                   # written by the twin ...
    n = tfm.decodes_count
    assert torch.equal(tfm(b, split_idx=0), tb) and tfm.decodes_count == n      # ... and seen by the original
