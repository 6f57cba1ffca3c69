"""Ensembles of runs: weighted averages, validation error on the shared split, weight search."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from comp import ensemble
from comp.errors import CompError


@pytest.mark.slow
def test_ensemble_arithmetic_and_sidecar(two_runs, tiny_sample):
    ws, a, b = two_runs
    out = ensemble.ensemble([a, b], blend='3,1', name='ens31', workdir=ws)
    assert out['weights'] == [0.75, 0.25] and out['shared_split']
    vocab = json.loads((a / 'vocab.json').read_text())
    pa = pd.read_csv(a / 'preds_test.csv', dtype={'image_id': str}).set_index('image_id')[vocab]
    pb = pd.read_csv(b / 'preds_test.csv', dtype={'image_id': str}).set_index('image_id')[vocab]
    expect = (0.75 * pa + 0.25 * pb).idxmax(axis=1)
    sub = pd.read_csv(out['submission'], dtype=str)
    assert list(sub['image_id']) == list(pd.read_csv(tiny_sample / 'sample_submission.csv', dtype=str)['image_id'])
    assert list(sub['label']) == list(expect[sub['image_id']])
    va = pd.read_csv(a / 'preds_valid.csv', dtype={'image_id': str}).set_index('image_id')
    vb = pd.read_csv(b / 'preds_valid.csv', dtype={'image_id': str}).set_index('image_id').loc[va.index]
    mix = 0.75 * va[vocab] + 0.25 * vb[vocab]
    assert out['valid_error'] == pytest.approx((mix.idxmax(axis=1) != va['label']).mean())
    side = json.loads((ws / 'submissions' / 'ens31.json').read_text())
    assert side['runs'] == [a.name, b.name] and side['weights'] == [0.75, 0.25]


@pytest.mark.slow
def test_searched_weights_are_the_ones_the_error_and_submission_use(two_runs):
    ws, a, b = two_runs
    out = ensemble.ensemble([a, b], search_weights=True, name='searched', workdir=ws)
    vocab = json.loads((a / 'vocab.json').read_text())
    va = pd.read_csv(a / 'preds_valid.csv', dtype={'image_id': str}).set_index('image_id')
    vb = pd.read_csv(b / 'preds_valid.csv', dtype={'image_id': str}).set_index('image_id').loc[va.index]
    err = lambda wa, wb: ((wa * va[vocab] + wb * vb[vocab]).idxmax(axis=1) != va['label']).mean()
    assert out['equal_weights_error'] == pytest.approx(err(0.5, 0.5))
    wa, wb = out['weights']
    assert wa + wb == pytest.approx(1) and out['valid_error'] == pytest.approx(err(wa, wb))
    pa = pd.read_csv(a / 'preds_test.csv', dtype={'image_id': str}).set_index('image_id')[vocab]
    pb = pd.read_csv(b / 'preds_test.csv', dtype={'image_id': str}).set_index('image_id')[vocab]
    sub = pd.read_csv(out['submission'], dtype=str)
    assert list(sub['label']) == list((wa * pa + wb * pb).idxmax(axis=1)[sub['image_id']])
    assert json.loads((ws / 'submissions' / 'searched.json').read_text())['weights'] == out['weights']


def test_weight_search_beats_equal_weights_where_one_member_is_right():
    # 90 images of 3 classes. `good` ranks the true class first on every image, by a modest margin (0.5 against 0.25);
    # each of the two others is confidently wrong (0.9 on another class) on its own third of the images and unsure
    # (uniform) elsewhere. Equal weights follow the confident member on those two thirds, so they get 2/3 wrong, every
    # one of them an image `good` gets right; weighting either wrong member down fixes its third.
    y = np.arange(90) % 3
    good = np.full((90, 3), 0.25)
    good[np.arange(90), y] = 0.5
    wrong = [np.full((90, 3), 1 / 3), np.full((90, 3), 1 / 3)]
    for k, (lo, hi) in enumerate([(0, 30), (30, 60)]):
        rows = np.arange(lo, hi)
        wrong[k][rows] = 0.05
        wrong[k][rows, (y[rows] + 1 + k) % 3] = 0.9
    vp = np.stack([wrong[0], good, wrong[1]])
    err = lambda w: float((np.tensordot(np.asarray(w, float), vp, axes=1).argmax(1) != y).mean())
    assert err([1, 1, 1]) == pytest.approx(2 / 3) and err([0, 1, 0]) == 0   # the case is as described
    w = ensemble.search(err, 3)
    assert err(w) < err([1, 1, 1])
    share = np.asarray(w, float) / np.sum(w)
    assert share[1] > share[0] and share[1] > share[2]


def test_weight_search_finds_the_good_model():
    rng = np.random.default_rng(0)
    vocab = ['a', 'b', 'c']
    y = rng.integers(0, 3, 200)
    good = np.eye(3)[y] * 0.6 + 0.4 / 3
    noise = rng.dirichlet([1, 1, 1], 200)
    labels = pd.Series(np.array(vocab)[y])
    vp = np.stack([noise, good, noise[::-1]])
    err = lambda w: ensemble._err(vp, w, labels, vocab, None)   # error rate
    w = ensemble.search(err, 3)
    assert err(w) == 0 < err([1, 1, 1])
    assert err(w) == float((np.tensordot(np.asarray(w, float), vp, axes=1).argmax(1) != y).mean())
    assert w[1] > 0


@pytest.mark.slow
def test_ensemble_refuses_a_run_with_another_vocab(two_runs, tmp_path):
    ws, a, b = two_runs
    c = ws / 'runs' / 'other-vocab'
    shutil.copytree(b, c)
    v = json.loads((c / 'vocab.json').read_text())
    (c / 'vocab.json').write_text(json.dumps(v[::-1]))
    with pytest.raises(CompError, match='run other-vocab has a different vocab'):
        ensemble.ensemble([a, c], workdir=ws)
    shutil.rmtree(c)
