"""Every kind of Kaggle image competition, end to end: a sample in that competition's exact layout is served by the
local Kaggle server (which names its metric), set up, trained, cross-validated, predicted with TTA, ensembled,
validated, scored against its hidden solution and submitted; scores are checked against scikit-learn here."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, log_loss, roc_auc_score
from sklearn.preprocessing import MultiLabelBinarizer

from comp import competition, config, cv, ensemble, infer, kaggle, predict, submission, train
from comp.sample import write_sample
from kaggle_server import FakeKaggle, client_env

# name -> (the metric as Kaggle's API names it, then what comp must infer: metric, label kind, submission format),
# from ../shared/COMPETITIONS.md
KINDS = {
    'paddy-disease-classification': ('Categorization Accuracy', 'accuracy', 'single', 'label'),
    'cassava-leaf-disease-classification': ('Categorization Accuracy', 'accuracy', 'single', 'label'),
    'dog-breed-identification': ('Multi Class Log Loss', 'log_loss', 'single', 'probs'),
    'dogs-vs-cats-redux-kernels-edition': ('Log Loss', 'log_loss', 'single', 'prob'),
    'aerial-cactus-identification': ('Area Under Receiver Operating Characteristic Curve', 'auc', 'single', 'prob'),
    'plant-pathology-2020-fgvc7': ('Mean Columnwise Area Under Receiver Operating Characteristic Curve', 'mean_auc', 'single', 'probs'),
    'plant-pathology-2021-fgvc8': ('Mean F1-Score', 'f1_micro', 'multi', 'labels'),
    'aptos2019-blindness-detection': ('Quadratic Weighted Kappa', 'qwk', 'ordinal', 'grade'),
    'petfinder-pawpularity-score': ('Root Mean Squared Error', 'rmse', 'regression', 'number'),
}
HIGHER = {'accuracy': True, 'log_loss': False, 'auc': True, 'mean_auc': True, 'f1_micro': True, 'qwk': True, 'rmse': False}


def sklearn_score(metric, sol, sub, id_col):
    """The metric of submission `sub` against solution `sol` as Kaggle (MLE-bench's grade.py) computes it."""
    sol = sol.set_index(id_col).sort_index()
    sub = sub.set_index(id_col).loc[sol.index]
    col = sol.columns[0]
    if metric == 'accuracy': return accuracy_score(sol[col].astype(str), sub[col].astype(str))
    if metric == 'log_loss':
        if len(sol.columns) > 1: return log_loss(sol.to_numpy(float).argmax(1), sub[sol.columns].to_numpy(float),
                                                 labels=range(len(sol.columns)))
        return log_loss(sol[col].astype(float), sub[col].astype(float), labels=[0, 1])
    if metric == 'auc': return roc_auc_score(sol[col].astype(float), sub[col].astype(float))
    if metric == 'mean_auc':
        return float(np.mean([roc_auc_score(sol[c].astype(float), sub[c].astype(float)) for c in sol.columns]))
    if metric == 'f1_micro':
        mlb = MultiLabelBinarizer()
        mlb.fit([v.split() for v in sol[col]])
        t, p = mlb.transform([v.split() for v in sol[col]]), mlb.transform([v.split() for v in sub[col]])
        return f1_score(t, p, average='micro')
    if metric == 'qwk': return cohen_kappa_score(sol[col].astype(int), sub[col].astype(int), weights='quadratic')
    if metric == 'rmse': return float(np.sqrt(np.mean((sol[col].astype(float) - sub[col].astype(float)) ** 2)))
    raise AssertionError(metric)


@pytest.fixture(scope='module', params=list(KINDS))
def kind(request, tmp_path_factory, monkeypatch_module):
    """(name, workspace, fake Kaggle, the served folder) with the competition set up from the local server."""
    name = request.param
    root = tmp_path_factory.mktemp(name[:12])
    # Paddy's sample photos are full size (480x640): its 1% sample is as quick as the others' small ones
    src = write_sample(root / 'src', scale=0.01 if name == competition.PADDY else 'small', seed=1, like=name)
    fake = FakeKaggle().start()
    fake.add_competition(name, src, metric=KINDS[name][0])
    home, ws = root / 'home', root / 'ws'
    home.mkdir(), ws.mkdir()
    for k, v in {**client_env(fake, home), 'COMP_KAGGLE_POLL': '0.05'}.items(): monkeypatch_module.setenv(k, v)
    monkeypatch_module.chdir(ws)
    kaggle.setup(name, workdir=ws)
    yield name, ws, fake, src
    fake.stop()


@pytest.fixture(scope='module')
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_setup_infers_the_kind_and_the_metric_from_the_api(kind):
    name, ws, fake, src = kind
    text, metric, task, fmt = KINDS[name]
    lay = json.loads((ws / 'comp.json').read_text())['layout']
    assert (lay['metric'], lay['task'], lay['submission']) == (metric, task, fmt)
    comp = competition.find(workdir=ws)
    sample = pd.read_csv(comp.path / comp.layout.sample_csv, nrows=0)
    assert comp.layout.columns == list(sample.columns)
    lines = competition.summary(comp)
    assert any(l.startswith('metric') and comp.layout.metric != '' for l in lines)


def test_train_cv_predict_ensemble_score_and_submit(kind):
    name, ws, fake, src = kind
    _, metric, task, fmt = KINDS[name]
    comp = competition.find(workdir=ws)
    cfg = dict(arch='test_convnext', size='48', epochs=2, workers=0, bs=16, lr=0.02)
    a = train.train(config.TrainConfig(**cfg), workdir=ws, quiet=True)
    b = train.train(config.TrainConfig(**{**cfg, 'lr': 0.01}), workdir=ws, quiet=True)
    for r in (a, b):
        assert r.result['metric'] == metric
        # the run's error is its validation score turned so lower is better
        s = r.result['valid_score']
        assert r.result['valid_error'] == pytest.approx(1 - s if HIGHER[metric] else s)
    group = cv.cv(config.TrainConfig(**{**cfg, 'epochs': 1}), folds=2, workdir=ws, quiet=True, echo=lambda *a: None)
    assert group.result['metric'] == metric and len(group.result['fold_errors']) == 2
    # The hidden answers, which Kaggle keeps: beside the downloaded data, `comp score` scores against them offline.
    shutil.copyfile(src / 'solution.csv', comp.solution_path)
    sol = submission.read(comp.solution_path)
    id_col = comp.layout.id_col
    scores = {}
    for rec in (predict.predict(a, tta=2, workdir=ws), predict.predict(group, workdir=ws),
                ensemble.ensemble([a.name, b.name], tta=2, search_weights=True, workdir=ws)):
        path = rec['submission']
        sub = submission.validate(path, workdir=ws)
        assert list(sub.columns) == list(sol.columns)
        assert sorted(sub[id_col]) == sorted(sol[id_col])
        ours = submission.score(path, workdir=ws)
        assert ours == pytest.approx(sklearn_score(metric, sol, sub, id_col), rel=1e-6, abs=1e-9)
        scores[path.name] = ours
        if fmt in ('prob', 'probs'):
            v = sub.iloc[:, 1:].astype(float).to_numpy()
            assert ((v >= 0) & (v <= 1)).all()
        if fmt == 'grade':
            lo, hi = comp.layout.range
            assert set(sub.iloc[:, 1].astype(int)) <= set(range(int(lo), int(hi) + 1))
    # the inference notebook's engine, on the CV group's submission (its folds' models, thresholds chosen out of fold):
    # the same submission as comp predict wrote
    group_sub = predict.predict(group, workdir=ws)['submission']
    out = ws / 'infer'
    out.mkdir()
    infer.predict(group_sub.stem, runs_from=ws, out=out, workdir=ws, echo=lambda m: None)
    mine, theirs = submission.read(out / 'submission.csv'), submission.read(group_sub)
    assert list(mine[id_col]) == list(theirs[id_col])
    if fmt in ('prob', 'probs', 'number'):   # numbers: float32 models averaged in another order
        np.testing.assert_allclose(mine.iloc[:, 1:].astype(float).to_numpy(), theirs.iloc[:, 1:].astype(float).to_numpy(), atol=1e-5)
    else: assert mine.equals(theirs)
    rec = kaggle.submit(path, 'ensemble', wait=30, workdir=ws)
    assert rec['status'] == 'COMPLETE'
    assert float(rec['public_score']) == pytest.approx(scores[path.name], abs=1e-5)   # Kaggle shows 5 decimals
