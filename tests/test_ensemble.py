"""Ensembles of runs: weighted averages, validation error on the shared split, weight search, greedy selection and
stacking (--method)."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from comp import blending, ensemble, infer, report
from comp.errors import CompError
from conftest import comp_cli, one_line


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


def _disjoint_mistakes():
    """(members x images x classes, labels, vocab): `a` and `c` each confidently wrong on their own third of 90 images
    and sure of the truth elsewhere, so their average is right everywhere; `b` is an exact copy of `a`; `noise` is
    random. Alone, each good member gets a third wrong."""
    rng = np.random.default_rng(0)
    vocab = ['x', 'y', 'z']
    y = np.arange(90) % 3
    def member(wrong):
        p = np.full((90, 3), 0.05)
        p[np.arange(90), y] = 0.9
        p[wrong] = 0.2
        p[wrong, y[wrong]] = 0.25
        p[wrong, (y[wrong] + 1) % 3] = 0.55
        return p
    a, c = member(np.arange(30)), member(np.arange(30, 60))
    vp = np.stack([a, a.copy(), rng.dirichlet([1, 1, 1], 90), c])
    return vp, pd.Series(np.array(vocab)[y]), vocab


def test_greedy_selection_takes_the_good_members_and_never_the_noise():
    vp, labels, vocab = _disjoint_mistakes()
    err = lambda w: ensemble._err(vp, w, labels, vocab, None)   # error rate
    assert [err(np.eye(4)[i]) for i in (0, 1, 3)] == [pytest.approx(1 / 3)] * 3   # the case is as described
    counts = blending.greedy(err, 4)
    weights = np.asarray(counts, float) / sum(counts)
    assert counts[2] == 0 and counts[0] + counts[1] > 0 and counts[3] > 0   # a (or its copy) and c; no noise
    assert err(weights) == err(counts) == 0


def test_greedy_starts_from_the_best_member_and_keeps_the_best_round_not_the_last():
    share = lambda c: c[0] / sum(c)
    # best at equal shares: [1, 1] in round 2; round 3 must add one (2:1, worse); round 4 only ties round 2
    err = lambda c: abs(share(c) - 0.5)
    assert blending.greedy(err, 2, rounds=3) == [1, 1] == blending.greedy(err, 2, rounds=4)
    best_second = lambda c: abs(share(c) - 0.2)   # member 1 alone is nearer than member 0 alone
    assert blending.greedy(best_second, 2, rounds=1) == [0, 1]


def _noise_members(n_images=60, n_members=20, seed=0):
    rng = np.random.default_rng(seed)
    vocab = ['x', 'y', 'z']
    y = np.arange(n_images) % 3
    rng.shuffle(y)
    return rng.dirichlet([1, 1, 1], (n_members, n_images)), pd.Series(np.array(vocab)[y]), vocab, y


def test_stacking_reports_the_error_of_predictions_its_fit_did_not_see():
    # 20 members of pure noise: 60 features for 60 images, so a fit on every image memorises its labels, while models
    # fitted without an image can only guess it (chance: 2/3 wrong)
    vp, labels, vocab, y = _noise_members()
    model, oof = blending.stack(vp, labels, vocab, 'single', C=1e4)
    seen = blending.combine_stack(model, list(vp))
    assert (seen.argmax(1) != y).mean() < 0.1
    assert (oof.argmax(1) != y).mean() > 0.45
    assert model['folds'] == blending.STACK_FOLDS and np.shape(model['coef']) == (3, 60)


def test_stacking_error_is_sklearn_cross_val_predict():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    vp, labels, vocab, y = _noise_members(n_members=3)
    model, oof = blending.stack(vp, labels, vocab, 'single', C=0.5, folds=4)
    X = np.concatenate(list(vp), axis=1)
    expect = cross_val_predict(LogisticRegression(C=0.5, max_iter=2000), X, y, method='predict_proba',
                               cv=StratifiedKFold(4, shuffle=True, random_state=0))
    np.testing.assert_allclose(oof, expect, atol=1e-6)
    full = LogisticRegression(C=0.5, max_iter=2000).fit(X, y)
    np.testing.assert_allclose(blending.combine_stack(model, list(vp)), full.predict_proba(X), atol=1e-6)


def test_stacking_a_regression_weighs_the_member_that_predicts():
    rng = np.random.default_rng(1)
    y = rng.uniform(0, 10, 120)
    vp = np.stack([(y + rng.normal(0, 0.3, 120))[:, None], rng.uniform(0, 10, (120, 1))])
    model, oof = blending.stack(vp, pd.Series([f'{v:g}' for v in y]), ['target'], 'regression')
    assert model['model'] == 'ridge' and abs(model['coef'][0][1]) < 0.05 < model['coef'][0][0]
    assert np.sqrt(np.mean((oof[:, 0] - y) ** 2)) < 0.5 < np.std(y)
    np.testing.assert_allclose(blending.combine({'stack': model, 'weights': [0.5, 0.5]}, list(vp))[:, 0],
                               vp[0, :, 0] * model['coef'][0][0] + vp[1, :, 0] * model['coef'][0][1] + model['intercept'][0])


def test_stacking_a_multi_label_competition_is_refused():
    with pytest.raises(CompError, match='--method stack supports single-label, regression and ordinal'):
        blending.stackable('multi')


def _valid(run, vocab):
    return pd.read_csv(run / 'preds_valid.csv', dtype={'image_id': str}).set_index('image_id').sort_index()


def _test(run, vocab):
    return pd.read_csv(run / 'preds_test.csv', dtype={'image_id': str}).set_index('image_id').sort_index()[vocab]


@pytest.mark.slow
def test_greedy_from_the_command_line_records_its_selection_and_the_error_of_its_weights(two_runs):
    ws, a, b = two_runs
    r = comp_cli('ensemble', a, b, '--method', 'greedy', '--rounds', '5', '--name', 'greedy', cwd=ws)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'greedy selection (5 rounds)' in r.stdout
    rec = json.loads((ws / 'submissions' / 'greedy.json').read_text())
    assert rec['method'] == 'greedy' and rec['rounds'] == 5 and rec['runs'] == [a.name, b.name]
    counts = [rec['selection'].get(n, 0) for n in rec['runs']]
    assert 1 <= sum(counts) <= 5 and rec['weights'] == pytest.approx([c / sum(counts) for c in counts])
    vocab = json.loads((a / 'vocab.json').read_text())
    va, vb = _valid(a, vocab), _valid(b, vocab)
    mix = sum(w * v[vocab] for w, v in zip(rec['weights'], (va, vb)))
    assert rec['valid_error'] == pytest.approx((mix.idxmax(axis=1) != va['label']).mean())
    assert rec['valid_error'] <= min(rec['run_valid_errors'])   # never worse than the best member
    sub = pd.read_csv(ws / 'submissions' / 'greedy.csv', dtype=str)
    test = sum(w * t for w, t in zip(rec['weights'], (_test(a, vocab), _test(b, vocab))))
    assert list(sub['label']) == list(test.idxmax(axis=1)[sub['image_id']])


@pytest.mark.slow
def test_stack_records_a_model_that_combine_repeats_and_its_inner_cv_error(two_runs, tmp_path):
    ws, a, b = two_runs
    out = ensemble.ensemble([a, b], method='stack', name='stacked', workdir=ws)
    rec = json.loads((ws / 'submissions' / 'stacked.json').read_text())
    assert rec['method'] == 'stack' and rec['weights'] == [0.5, 0.5] and rec['runs'] == [a.name, b.name]
    st = rec['stack']
    assert st['model'] == 'logistic' and st['C'] == blending.STACK_C and st['folds'] == blending.STACK_FOLDS
    vocab = json.loads((a / 'vocab.json').read_text())
    va, vb = _valid(a, vocab), _valid(b, vocab)
    vp = np.stack([va[vocab].to_numpy(), vb[vocab].to_numpy()])
    _, oof = blending.stack(vp, va['label'], vocab, 'single')
    assert rec['valid_error'] == pytest.approx((oof.argmax(1) != va['label'].map(vocab.index).to_numpy()).mean())
    assert rec['equal_weights_error'] == pytest.approx(((va[vocab] + vb[vocab]).idxmax(axis=1) != va['label']).mean())
    tests = [_test(a, vocab), _test(b, vocab)]
    probs = blending.combine(rec, [t.to_numpy() for t in tests])   # as a kernel repeats it, from the record alone
    sub = pd.read_csv(out['submission'], dtype=str).set_index('image_id')
    assert list(sub.loc[tests[0].index, 'label']) == [vocab[i] for i in probs.argmax(1)]
    # the inference notebook's engine repeats it from the runs and the record; comp report reads the record
    infer.predict('stacked', runs_from=ws, out=tmp_path, workdir=ws, echo=lambda m: None)
    assert pd.read_csv(tmp_path / infer.OUT_CSV).equals(pd.read_csv(out['submission']))
    assert report.report(['stacked'], out=tmp_path / 'report', workdir=ws).is_file()


@pytest.mark.slow
def test_methods_that_learn_from_validation_refuse_members_without_a_shared_one(two_runs):
    ws, a, b = two_runs
    other = ws / 'runs' / 'other-split'
    shutil.copytree(b, other)
    cfg = json.loads((other / 'config.json').read_text())
    (other / 'config.json').write_text(json.dumps({**cfg, 'seed': cfg['seed'] + 1}))
    blind = ws / 'runs' / 'no-valid'
    shutil.copytree(b, blind)
    (blind / 'preds_valid.csv').write_text((b / 'preds_valid.csv').read_text().splitlines()[0] + '\n')
    try:
        for method in ('search', 'greedy', 'stack'):
            with pytest.raises(CompError, match=f'--method {method} needs runs that validate on the same images'):
                ensemble.ensemble([a, other], method=method, workdir=ws)
            with pytest.raises(CompError, match='needs validation predictions, and no-valid has none'):
                ensemble.ensemble([a, blind], method=method, workdir=ws)
        with pytest.raises(CompError, match='--search-weights needs runs that validate on the same images'):
            ensemble.ensemble([a, other], search_weights=True, workdir=ws)
        assert 'valid_error' not in ensemble.ensemble([a, other], workdir=ws)   # an average needs no validation
    finally:
        shutil.rmtree(other)
        shutil.rmtree(blind)


def test_a_single_member_and_contradictory_options_are_refused():
    with pytest.raises(CompError, match='an ensemble needs at least two runs, 1 given'):
        ensemble.ensemble(['only-one'], method='greedy')
    with pytest.raises(CompError, match='--method best: use one of average, search, greedy, stack'):
        ensemble.ensemble(['a', 'b'], method='best')
    with pytest.raises(CompError, match='--blend sets the weights of --method average'):
        ensemble.ensemble(['a', 'b'], method='stack', blend='2,1')
    with pytest.raises(CompError, match='--search-weights is --method search'):
        ensemble.ensemble(['a', 'b'], method='greedy', search_weights=True)


@pytest.mark.slow
def test_a_single_member_is_one_line_from_the_command_line(two_runs):
    ws, a, _ = two_runs
    one_line(comp_cli('ensemble', a, '--method', 'stack', cwd=ws), 'at least two runs', 'comp runs')
