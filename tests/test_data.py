"""Shared validation splits and folds, and DataLoader workers."""
import subprocess
import sys

import pytest

from comp import competition, data
from comp.errors import ConfigError


def test_split_is_stored_once_and_reused(tiny_sample, tmp_path):
    comp = competition.load(tiny_sample)
    a = data.valid_ids(comp, tmp_path, seed=1)
    f = data.split_file(tmp_path, 1)
    assert f.is_file()
    mtime = f.stat().st_mtime_ns
    assert data.valid_ids(comp, tmp_path, seed=1) == a and f.stat().st_mtime_ns == mtime
    assert data.valid_ids(comp, tmp_path, seed=2) != a
    labels = comp.train_df().set_index('image_id')['label']
    per_label = labels[list(a)].value_counts().reindex(labels.unique(), fill_value=0)
    assert ((per_label - 0.2 * labels.value_counts()).abs() <= 1).all()  # 20% of every label, to rounding


def test_folds_disjoint_covering_and_stratified(small_sample, tmp_path):
    comp = competition.load(small_sample)
    k = 5
    folds = [data.valid_ids(comp, tmp_path, seed=3, folds=k, fold=i) for i in range(k)]
    ids = set(comp.train_df()['image_id'])
    assert set().union(*folds) == ids and sum(map(len, folds)) == len(ids)
    labels = comp.train_df().set_index('image_id')['label']
    for f in folds:
        counts = labels[list(f)].value_counts()
        expected = labels.value_counts() / k
        assert ((counts - expected).abs() <= 1).all()
    with pytest.raises(ConfigError, match='--fold 5 must be between 0 and 4'):
        data.valid_ids(comp, tmp_path, seed=3, folds=k, fold=5)


def test_split_for_other_images_is_refused(tiny_sample, small_sample, tmp_path):
    data.valid_ids(competition.load(tiny_sample), tmp_path, seed=0)
    with pytest.raises(ConfigError, match='delete it to make a new split'):
        data.valid_ids(competition.load(small_sample), tmp_path, seed=0)


def test_workers_follow_the_cores_this_process_may_use():
    # Kaggle and `taskset` give a process fewer cores than the host has; os.cpu_count() still counts the host's.
    code = ('import os; os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]}); '
            'from comp import data, runs; print(data.num_workers(), runs.environment()["cpu_count"])')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ['1', '1']
    assert data.num_workers(3) == 3
