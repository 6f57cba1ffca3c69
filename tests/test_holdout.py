"""Holdout competitions carved from a training set, to score offline."""
import shutil
from pathlib import Path

import pandas as pd

from comp import competition, holdout, submission
from conftest import comp_cli, one_line, snapshot, tmpfs


def test_holdout_layout_stratified_and_disjoint(small_sample, tmp_path):
    src = competition.load(small_sample)
    dest = holdout.holdout(tmp_path / 'ho', frac=0.25, seed=3, data=src)
    ho = competition.load(dest)  # valid competition in the same layout
    train = ho.train_df()
    sol = pd.read_csv(dest / 'solution.csv', dtype=str)
    orig = src.train_df().set_index('image_id')['label']
    assert not set(train['image_id']) & set(sol['image_id'])
    assert set(train['image_id']) | set(sol['image_id']) == set(orig.index)
    assert (orig[sol['image_id']].to_numpy() == sol['label'].to_numpy()).all()
    frac = sol['label'].value_counts() / orig.value_counts()
    assert frac.between(0.15, 0.35).all(), frac
    assert list(ho.sample_df()['image_id']) == list(sol['image_id'])
    perfect = tmp_path / 'perfect.csv'
    sol.to_csv(perfect, index=False)
    assert submission.score(perfect, ho) == 1.0


def test_a_destination_inside_a_competition_is_refused_before_anything_is_written(tiny_copy, tmp_path):
    # Written inside its source, a holdout made every later command on the source fail ("labels differ from the
    # folders"); inside another competition, that one.
    other = Path(shutil.copytree(tiny_copy, tmp_path / 'other'))
    before = snapshot(tmp_path)
    for dest in (tiny_copy / 'train_images' / 'ho', tiny_copy / 'ho', other / 'test_images' / 'ho'):
        r = comp_cli('holdout', dest, '--data', tiny_copy, cwd=tmp_path)
        one_line(r, str(dest), 'inside the competition', 'choose a folder outside it')
    assert snapshot(tmp_path) == before
    competition.load(tiny_copy), competition.load(other)


def test_a_full_disk_names_the_holdout_not_the_source_image(tiny_sample, tmp_path):
    with tmpfs(tmp_path / 'small') as d:
        # the images are copied (no hard link across disks) until the 1 MB disk is full
        r = comp_cli('holdout', d / 'ho', '--data', tiny_sample, cwd=tmp_path)
        one_line(r, f'no room on the disk for {d / "ho"}', 'free more than that')
        assert str(tiny_sample) not in r.stderr and not list(d.iterdir())   # no partial folder keeps the disk full
