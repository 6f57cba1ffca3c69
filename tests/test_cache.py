"""The decode-once cache: batches equal to fastai's uncached pipeline, where it goes, and its clean-up."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from comp import cache, competition, data


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
    return cache.cache_of(dls.train.dataset)


def test_the_cache_goes_where_there_is_room_or_is_left_off(tiny_sample, tmp_path, monkeypatch):
    comp = competition.load(tiny_sample)
    kw = dict(size=(48, 48), resize=('squish', (64, 48)), bs=8, workers=0)
    valid = data.valid_ids(comp, tmp_path)
    (tmp_path / 'cache').mkdir()
    monkeypatch.setenv('COMP_DECODE_CACHE_DIR', str(tmp_path / 'cache'))
    dls = data.dataloaders(comp, valid, **kw)
    assert Path(cache_tfm(dls).file).parent == tmp_path / 'cache'
    assert dls.decode_cache.endswith(f'in {tmp_path / "cache"}')
    assert cache.folder(shutil.disk_usage(tmp_path).free * 2) is None
    # over the budget: off, and it says which setting to change
    monkeypatch.setenv('COMP_DECODE_CACHE_GB', '0.0001')
    dls = data.dataloaders(comp, valid, **kw)
    assert cache_tfm(dls) is None and 'over the' in dls.decode_cache and 'COMP_DECODE_CACHE_GB' in dls.decode_cache
    monkeypatch.delenv('COMP_DECODE_CACHE_GB')
    # no folder with room for the cache: the plain pipeline, which still delivers batches
    from collections import namedtuple
    monkeypatch.setattr('shutil.disk_usage', lambda d: namedtuple('u', 'total used free')(1, 1, 0))
    dls = data.dataloaders(comp, valid, **kw)
    assert cache_tfm(dls) is None and dls.decode_cache.startswith('off: no room')
    monkeypatch.undo()
    xb, yb = dls.one_batch()
    assert xb.shape == (8, 3, 48, 48)


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
            'dls.one_batch(); from comp.cache import cache_of; print(cache_of(dls.train.dataset).file)')
    r = subprocess.run([sys.executable, '-c', code, str(tiny_sample), str(tmp_path)], capture_output=True, text=True,
                       env={**os.environ, 'COMP_DECODE_CACHE_DIR': str(cache)})
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


def test_a_missing_decode_cache_folder_falls_back_and_says_so(monkeypatch, tmp_path):
    from comp import cache
    monkeypatch.setenv('COMP_DECODE_CACHE_DIR', str(tmp_path / 'not-there'))
    where, why = cache.plan(('squish', (96, 96)), 10)
    assert where is not None and 'not-there' in why and 'is not a folder' in why and 'no room' not in why
