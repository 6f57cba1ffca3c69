"""Issue 4: TTA, ensembles, submission validation, scoring and holdouts."""
import json

import numpy as np
import pandas as pd
import pytest

from comp import competition, ensemble, holdout, predict, runs, submission, train
from comp.errors import CompError, SubmissionError
from comp.train import TrainConfig
from conftest import comp_cli


@pytest.fixture(scope='module')
def two_runs(tiny_sample, tmp_path_factory):
    ws = tmp_path_factory.mktemp('ens')
    competition.record(competition.load(tiny_sample), ws)
    a = train.train(TrainConfig(arch='test_convnext', epochs=2, workers=0), workdir=ws, quiet=True)
    b = train.train(TrainConfig(arch='test_convnext', epochs=1, lr=0.03, workers=0), workdir=ws, quiet=True)
    return ws, a, b


@pytest.mark.slow
def test_tta_equals_fastai(two_runs):
    from fastai.vision.all import set_seed
    from comp.tta import tta
    ws, a, _ = two_runs
    learn, comp, _ = predict.load_learner(a, ws)
    dl = learn.dls.valid.new(shuffle=False, drop_last=False)
    set_seed(5)
    ref, _ = learn.tta(dl=dl, n=3, beta=0.3)
    set_seed(5)
    ours = tta(learn, dl, n=3, beta=0.3)
    assert torch_close(ref, ours)
    plain, _ = learn.get_preds(dl=dl)
    assert not torch_close(plain, ours)  # the augmented passes really changed something


@pytest.mark.parametrize('method', ['pad', 'crop'])
def test_tta_with_random_item_resizes_still_equals_fastai(workspace, tmp_path, method):
    # fastai places padded and cropped images at random per TTA pass: comp must keep that, not replay one decode
    from fastai.vision.all import set_seed
    from comp.train import TrainConfig, build_learner, resolve
    from comp.tta import tta
    c = resolve(TrainConfig(arch='test_convnext', resize=(method, (96, 72)), workers=0), competition.find())
    learn = build_learner(c, competition.find(), tmp_path, '.')
    dl = learn.dls.valid.new(shuffle=False, drop_last=False)
    set_seed(3)
    ref, _ = learn.tta(dl=dl, n=2)
    set_seed(3)
    assert torch_close(ref, tta(learn, dl, n=2))


@pytest.mark.parametrize('method', ['pad', 'crop'])
def test_tta_on_the_test_set_decodes_each_image_once_with_fastais_result(workspace, tmp_path, method):
    # the convnext recipes pad: their TTA must read each image once, and still equal plain fastai's
    from PIL import Image
    from fastai.vision.all import set_seed
    from comp.data import cache_of
    from comp.train import TrainConfig, build_learner, resolve
    from comp.tta import tta
    comp = competition.find()
    c = resolve(TrainConfig(arch='test_convnext', resize=(method, (96, 72)), workers=0), comp)
    learn = build_learner(c, comp, tmp_path, '.')  # a predicting learner, as `comp predict` loads
    plain = build_learner({**c, 'cache': False}, comp, tmp_path, '.')
    plain.model.load_state_dict(learn.model.state_dict())
    cache = cache_of(learn.dls.valid.dataset)
    assert cache is not None and cache_of(plain.dls.valid.dataset) is None
    landscape = lambda paths: sum(w > h for w, h in (Image.open(p).size for p in paths))
    dls = {'test': (predict.test_dl(learn, comp), predict.test_dl(plain, comp),
                    [comp.path / comp.layout.test_dir / i for i in comp.test_ids()]),
           'valid': (learn.dls.valid.new(shuffle=False, drop_last=False), plain.dls.valid.new(shuffle=False, drop_last=False),
                     [comp.path / p for p in learn.dls.valid.dataset.items['path']])}
    # the sample's landscape photos are in the training split: them and a few portraits, as a dl to predict
    tr = learn.dls.train.dataset.items
    wide = tr['path'].map(lambda p: landscape([comp.path / p]) == 1)
    unread = tr['path'].map(lambda p: cache.done[cache.index[str(comp.path / p)]] == 0)  # building read one
    some = pd.concat([tr[wide], tr[~wide & unread].head(10)])
    dls['landscape'] = (learn.dls.test_dl(some), plain.dls.test_dl(some), [comp.path / p for p in some['path']])
    for name, (dl, plain_dl, paths) in dls.items():
        set_seed(3)
        ref, _ = plain.tta(dl=plain_dl, n=2)
        set_seed(3)
        decodes, reads = cache.decodes_count, cache.reads_count
        assert torch_close(ref, tta(learn, dl, n=2)), name
        moved = landscape(paths)
        # a portrait photo is decoded once; a landscape one, which placement moves, in every pass (2 + 1)
        assert cache.decodes_count - decodes == len(paths) + 2 * moved, name
        # with no such photo, every pass is replayed from one read; with one, fastai's passes read the cache
        assert cache.reads_count - reads == len(paths) * (1 if moved == 0 else 1 + 3), name
    assert landscape(dls['landscape'][2]) > 0 and landscape(dls['test'][2]) == 0  # both branches ran


def torch_close(a, b):
    import torch
    return torch.allclose(torch.as_tensor(a).float(), torch.as_tensor(b).float(), atol=1e-6)


@pytest.mark.slow
def test_predict_tta_records_both_errors_and_runs_shows_them(two_runs):
    ws, a, _ = two_runs
    path = predict.predict(a, tta=2, workdir=ws)
    res = json.loads((a / 'result.json').read_text())
    valid = pd.read_csv(a / 'preds_valid_tta2.csv')
    vocab = json.loads((a / 'vocab.json').read_text())
    assert res['valid_error_tta'] == pytest.approx(predict.error(valid, vocab))
    side = submission.read_sidecar(path)
    assert side['tta'] == 2 and side['beta'] == 0.25 and side['valid_error_tta'] == res['valid_error_tta']
    row = next(r for r in runs.table(ws) if r['run'] == a.name)
    assert row['tta_error'] == res['valid_error_tta'] and row['error'] == res['valid_error']


@pytest.mark.slow
def test_ensemble_arithmetic_and_sidecar(two_runs, tiny_sample):
    ws, a, b = two_runs
    out = ensemble.ensemble([a, b], weights='3,1', name='ens31', workdir=ws)
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
def test_weight_search_never_worse_than_equal(two_runs):
    ws, a, b = two_runs
    out = ensemble.ensemble([a, b], search_weights=True, name='searched', workdir=ws)
    assert out['valid_error'] <= out['equal_weights_error']
    assert out['search_gain'] == pytest.approx(out['equal_weights_error'] - out['valid_error'])


def test_weight_search_finds_the_good_model():
    rng = np.random.default_rng(0)
    vocab = ['a', 'b', 'c']
    y = rng.integers(0, 3, 200)
    good = np.eye(3)[y] * 0.6 + 0.4 / 3
    noise = rng.dirichlet([1, 1, 1], 200)
    labels = pd.Series(np.array(vocab)[y])
    vp = np.stack([noise, good, noise[::-1]])
    w = ensemble.search(vp, labels, vocab)
    assert ensemble._err(vp, w, labels, vocab) == 0 < ensemble._err(vp, [1, 1, 1], labels, vocab)
    assert w[1] > 0


@pytest.mark.slow
def test_ensemble_refuses_a_run_with_another_vocab(two_runs, tmp_path):
    import shutil
    ws, a, b = two_runs
    c = ws / 'runs' / 'other-vocab'
    shutil.copytree(b, c)
    v = json.loads((c / 'vocab.json').read_text())
    (c / 'vocab.json').write_text(json.dumps(v[::-1]))
    with pytest.raises(CompError, match='run other-vocab has a different vocab'):
        ensemble.ensemble([a, c], workdir=ws)
    shutil.rmtree(c)


@pytest.fixture
def sol(tiny_sample):
    return pd.read_csv(tiny_sample / 'solution.csv', dtype=str)


@pytest.mark.parametrize('breaks, msg', [
    (lambda d: d.iloc[1:], '1 test ids are missing: 200001.jpg'),
    (lambda d: pd.concat([d, pd.DataFrame({'image_id': ['999.jpg'], 'label': ['blast']})]), '1 ids are not test ids: 999.jpg'),
    (lambda d: pd.concat([d, d.iloc[:1]]), '1 ids appear more than once: 200001.jpg'),
    (lambda d: d.assign(label=['rust'] + list(d['label'][1:])), 'unknown labels: rust'),
    (lambda d: d.assign(label=[''] + list(d['label'][1:])), '1 rows have an empty value (ids: 200001.jpg)'),
    (lambda d: d.rename(columns={'label': 'disease'}), 'columns are image_id,disease; expected image_id,label'),
])
def test_every_validation_failure(tiny_sample, sol, tmp_path, breaks, msg):
    f = tmp_path / 'sub.csv'
    breaks(sol).to_csv(f, index=False)
    with pytest.raises(SubmissionError) as e:
        submission.validate(competition.load(tiny_sample), f)
    assert msg in str(e.value)


def test_all_problems_listed_together(tiny_sample, sol, tmp_path):
    f = tmp_path / 'sub.csv'
    bad = pd.concat([sol.iloc[1:], sol.iloc[1:2]]).assign(label=lambda d: ['rust'] + list(d['label'][1:]))
    bad.to_csv(f, index=False)
    r = comp_cli('validate', f, '--data', tiny_sample, cwd=tmp_path)
    assert r.returncode == 1
    for m in ('missing', 'more than once', 'unknown labels'): assert m in r.stderr
    assert r.stderr.count('\n') == 1


def test_shuffled_rows_are_valid_and_score_is_accuracy(tiny_sample, sol, tmp_path):
    comp = competition.load(tiny_sample)
    sub = sol.sample(frac=1, random_state=1).reset_index(drop=True)
    wrong = sub.index[:7]
    vocab = comp.vocab()
    sub.loc[wrong, 'label'] = [vocab[(vocab.index(l) + 1) % len(vocab)] for l in sub.loc[wrong, 'label']]
    f = tmp_path / 'sub.csv'
    sub.to_csv(f, index=False)
    submission.validate(comp, f)
    assert submission.score(comp, f) == pytest.approx(1 - 7 / len(sol))


def test_submission_write_refuses_invalid_and_keeps_existing_file(tiny_sample, sol, tmp_path):
    comp = competition.load(tiny_sample)
    path = submission.write(comp, sol, 'mine', {'runs': []}, tmp_path)
    before = path.read_bytes()
    with pytest.raises(SubmissionError, match='nothing written'):
        submission.write(comp, sol.iloc[1:], 'mine', {'runs': []}, tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir() if p.name.startswith('.')] == []


def test_score_without_solution_says_why(tiny_copy, sol, tmp_path):
    (tiny_copy / 'solution.csv').unlink()
    f = tmp_path / 's.csv'
    sol.to_csv(f, index=False)
    with pytest.raises(SubmissionError, match='no solution.csv'):
        submission.score(competition.load(tiny_copy), f)


def test_holdout_layout_stratified_and_disjoint(small_sample, tmp_path):
    src = competition.load(small_sample)
    dest = holdout.holdout(src, tmp_path / 'ho', frac=0.25, seed=3)
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
    assert submission.score(ho, perfect) == 1.0
