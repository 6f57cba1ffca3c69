"""The sample competition: Paddy Doctor's layout and proportions, deterministic per seed, labels not given away by colour."""
import hashlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from comp import competition
from comp.sample import COUNTS, LABELS, VARIETIES, AGES, draw_leaf, write_sample
from conftest import comp_cli, ended_pid, one_line, snapshot


def test_layout_matches_paddy(tiny_sample):
    root = tiny_sample
    assert sorted(p.name for p in (root / 'train_images').iterdir()) == sorted(COUNTS)
    train = pd.read_csv(root / 'train.csv', dtype=str)
    assert list(train.columns) == ['image_id', 'label', 'variety', 'age']
    sub = pd.read_csv(root / 'sample_submission.csv', dtype=str)
    assert list(sub.columns) == ['image_id', 'label']
    assert sub['image_id'].iloc[0] == '200001.jpg'
    assert list(sub['image_id']) == [f'{200001 + i}.jpg' for i in range(len(sub))]
    assert sorted(f.name for f in (root / 'test_images').iterdir()) == sorted(sub['image_id'])
    for i, lbl in zip(train['image_id'], train['label']):
        assert (root / 'train_images' / lbl / i).is_file()
    sol = pd.read_csv(root / 'solution.csv', dtype=str)
    assert list(sol['image_id']) == list(sub['image_id']) and set(sol['label']) <= set(LABELS)
    assert set(train['variety']) <= set(VARIETIES) and set(train['age'].astype(int)) <= set(AGES)
    competition.load(root)  # the validator accepts it


def test_counts_are_proportional_to_paddy(small_sample):
    counts = pd.read_csv(small_sample / 'train.csv')['label'].value_counts()
    real = pd.Series(COUNTS)
    frac = counts / real
    assert frac.max() / frac.min() < 1.3, frac
    assert 10 <= counts.min() and counts.max() <= 99  # tens per label by default


def test_images_are_portrait_jpegs_with_a_few_landscape(small_sample):
    sizes = [Image.open(f).size for f in (small_sample / 'train_images').rglob('*.jpg')]
    assert sizes.count((480, 640)) == len(sizes) - 4 and sizes.count((640, 480)) == 4
    kb = [f.stat().st_size / 1024 for f in (small_sample / 'test_images').glob('*.jpg')]
    assert 10 < np.median(kb) < 100  # tens of KB, like the real photos at quality ~90


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = write_sample(tmp_path / 'a', scale=0.005, seed=7)
    b = write_sample(tmp_path / 'b', scale=0.005, seed=7)
    c = write_sample(tmp_path / 'c', scale=0.005, seed=8)
    digest = lambda root: {str(f.relative_to(root)): hashlib.md5(f.read_bytes()).hexdigest()
                           for f in sorted(root.rglob('*')) if f.is_file()}
    assert digest(a) == digest(b)
    assert digest(a) != digest(c)


def test_normal_has_no_lesions_and_other_labels_do():
    # Pixels far from the leaf's greens are lesions: none on 'normal', some on every other label.
    def off_green(label):
        x = np.asarray(draw_leaf(label, seed=3, k=1)).astype(float)
        return ((x[..., 0] > x[..., 1] + 10) | (x.min(-1) > 150)).mean()
    assert off_green('normal') < 0.002
    for lbl in LABELS:
        if lbl != 'normal': assert off_green(lbl) > 0.004, lbl


def test_mean_colour_does_not_give_the_label_away(small_sample):
    # A nearest-centroid classifier on mean RGB, trained on half the images, should be near chance.
    train = pd.read_csv(small_sample / 'train.csv')
    feats = np.stack([np.asarray(Image.open(small_sample / 'train_images' / l / i).reduce(8)).reshape(-1, 3).mean(0)
                      for i, l in zip(train['image_id'], train['label'])])
    y = train['label'].to_numpy()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(y))
    tr, te = idx[: len(y) // 2], idx[len(y) // 2:]
    cents = {l: feats[tr][y[tr] == l].mean(0) for l in LABELS}
    pred = [min(cents, key=lambda l: np.linalg.norm(f - cents[l])) for f in feats[te]]
    acc = (np.array(pred) == y[te]).mean()
    assert acc < 0.35, acc


def test_a_killed_sample_leaves_nothing_behind_for_long(tmp_path):
    left = tmp_path / f'.paddy.{ended_pid()}.abc'
    (left / 'train_images').mkdir(parents=True)  # what a killed `comp sample paddy` left
    r = comp_cli('sample', 'paddy', '--scale', '0.005', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not left.exists() and sorted(p.name for p in tmp_path.iterdir()) == ['comp.json', 'paddy']


def test_two_commands_writing_one_folder_keep_the_first_ones_files(tmp_path):
    # Both saw the folder absent or empty; the one that finishes second must neither merge into nor replace it.
    from comp.errors import CompError
    from comp.files import atomic_dir
    dest = tmp_path / 'paddy'
    with pytest.raises(CompError, match='written by another command meanwhile') as e:
        with atomic_dir(dest) as tmp:
            (tmp / 'train.csv').write_text('the second command\'s\n')
            write_sample(dest, scale=0.005, seed=1)   # the other command, finished first
    assert str(e.value).count('\n') == 0 and str(dest) in str(e.value)
    competition.load(dest)   # the first one's competition, whole
    assert 'second' not in (dest / 'train.csv').read_text() and [p.name for p in tmp_path.iterdir()] == ['paddy']


def test_a_sample_inside_a_competition_is_refused(tiny_copy, tmp_path):
    before = snapshot(tiny_copy)
    one_line(comp_cli('sample', tiny_copy / 'train_images' / 'more', '--scale', '0.005', cwd=tmp_path),
             'inside the competition', 'choose a folder outside it')
    assert snapshot(tiny_copy) == before and not (tmp_path / 'comp.json').exists()
