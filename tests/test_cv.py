"""CV groups: every fold trained, out-of-fold probabilities covering every training image once, fold-averaged test
probabilities, resume of an interrupted group, and groups in predict, ensemble and the runs table."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from comp import competition, cv, ensemble, predict, runs
from comp.learner import error
from comp.config import TrainConfig
from comp.errors import ConfigError
from conftest import comp_cli, ended_pid

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def groups(tiny_sample, tmp_path_factory):
    """Two 2-fold CV groups of tiny runs on the tiny sample's shared folds."""
    ws = tmp_path_factory.mktemp('cv')
    competition.record(competition.load(tiny_sample), ws)
    tc = dict(arch='test_convnext', epochs=1, workers=0)
    a = cv.cv(TrainConfig(**tc), folds=2, workdir=ws, quiet=True)
    b = cv.cv(TrainConfig(**tc, lr=0.03), folds=2, workdir=ws, quiet=True)
    return ws, a, b


def test_out_of_fold_predictions_cover_every_training_image_once(groups, tiny_sample):
    ws, a, _ = groups
    comp = competition.load(tiny_sample)
    test, oof = predict.predictions(a, workdir=ws)
    ids = comp.train_df()[comp.layout.id_col]
    assert sorted(oof['image_id']) == sorted(ids) and not oof['image_id'].duplicated().any()
    folds = pd.read_csv(ws / 'splits' / 'folds2_seed42.csv', dtype=str).set_index('image_id')['fold']
    vocab = a.vocab
    for k, m in enumerate(a.members):
        own = pd.read_csv(m / 'preds_valid.csv', dtype={'image_id': str}).set_index('image_id')
        assert set(own.index) == set(folds[folds == str(k)].index)  # fold k's model predicted fold k's images
        np.testing.assert_allclose(oof.set_index('image_id').loc[own.index, vocab], own[vocab])
    tests = [pd.read_csv(m / 'preds_test.csv', dtype={'image_id': str}).set_index('image_id')[vocab] for m in a.members]
    np.testing.assert_allclose(test.set_index('image_id')[vocab], (tests[0] + tests[1]) / 2, atol=1e-6)
    assert a.result['valid_error'] == pytest.approx(error(oof, vocab))
    assert a.result['fold_errors'] == [m.result['valid_error'] for m in a.members]


def test_an_ensemble_of_groups_searches_weights_on_out_of_fold_predictions(groups):
    ws, a, b = groups
    out = ensemble.ensemble([a, b], search_weights=True, name='cv-ens', workdir=ws)
    assert out['shared_split'] and out['valid_error'] <= out['equal_weights_error']
    assert out['run_valid_errors'] == pytest.approx([a.result['valid_error'], b.result['valid_error']])
    n_train = len(predict.predictions(a, workdir=ws)[1])
    assert json.loads((ws / 'submissions' / 'cv-ens.json').read_text())['runs'] == [a.name, b.name] and n_train > 50


def test_predict_a_group_with_tta_and_the_runs_table(groups):
    ws, a, _ = groups
    r = comp_cli('predict', a.name, '--tta', '1', cwd=ws)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'with TTA' in r.stdout and 'submission: ' in r.stdout
    rows = json.loads(comp_cli('runs', '--json', cwd=ws).stdout)
    assert {r['run'] for r in rows} == {g.name for g in groups[1:]}  # one row per group, no fold runs
    row = next(r for r in rows if r['run'] == a.name)
    assert row['fold'] == 'oof/2' and row['status'] == 'complete' and row['error'] == a.result['valid_error']
    every = {r['run'] for r in json.loads(comp_cli('runs', '--json', '--folds', cwd=ws).stdout)}
    assert {m.name for m in a.members} <= every


def test_an_interrupted_group_resumes_with_its_finished_folds_untouched(groups):
    ws, a, _ = groups
    copy = ws / 'runs' / 'cv-copy'
    shutil.copytree(a.path, copy)
    g = runs.Run(copy)
    first, second = g.members
    stamp = first.model_file.stat().st_mtime_ns
    # fold 1 was killed after its only epoch's checkpoint, before it finished, and the group with it
    second_copy = ws / 'runs' / (second.name + '-copy')
    shutil.copytree(second.path, second_copy)
    shutil.copy(second_copy / 'model.pth', second_copy / 'checkpoint.pth')
    for f in ('model.pth', 'result.json', 'preds_test.csv', 'preds_valid.csv'): (second_copy / f).unlink(missing_ok=True)
    gone = ended_pid()
    (second_copy / 'status.json').write_text(json.dumps({'status': 'running', 'epochs_done': 0, 'pid': gone}))
    g.write_config({**g.config, 'members': [first.name, None]})
    g.result_file.unlink()
    (copy / 'status.json').write_text(json.dumps({'status': 'running', 'pid': gone}))
    try:
        assert g.status == 'incomplete' and runs.Run(second_copy).status == 'incomplete'
        said = []
        done = cv.cv(None, workdir=ws, resume='cv-copy', quiet=True, echo=said.append)
        assert said == [f'fold 1: resuming {second_copy.name}']  # fold 0 was not trained again
        assert [m.name for m in done.members] == [first.name, second_copy.name] and done.status == 'complete'
        assert first.model_file.stat().st_mtime_ns == stamp and runs.Run(second_copy).status == 'complete'
        assert done.result['n_valid'] == len(predict.predictions(a, workdir=ws)[1])
    finally:
        shutil.rmtree(copy)
        shutil.rmtree(second_copy)


def test_a_refit_trains_on_every_image_and_votes_on_the_test_images(groups, tiny_sample):
    ws, a, b = groups   # b is given its refit here (after the tests above, which read b as it was)
    before = b.result['valid_error']
    r = comp_cli('cv', '--resume', b.name, '--refit', cwd=ws)
    assert r.returncode == 0, r.stderr[-2000:]
    g = runs.find(b.name, ws)
    refit = g.refit
    assert refit is not None and f'{refit.name}: refit on every training image' in r.stdout
    c, folds = refit.config, [m.config for m in g.members]
    assert c['valid_pct'] == 0 and c['folds'] is None and c['epochs'] == folds[0]['epochs'] and c['lr'] == folds[0]['lr']
    comp = competition.load(tiny_sample)
    assert refit.result['n_train'] == len(comp.train_df()) and refit.result['valid_error'] is None
    assert 'no validation score' in refit.result['no_validation']
    assert len(pd.read_csv(refit / 'preds_valid.csv')) == 0 and refit.metrics()['valid_loss'].isna().all()
    # the group's test probabilities: the folds' and the refit's, one vote each; its CV error stays the folds'
    test, oof = predict.predictions(g, workdir=ws)
    vocab = g.vocab
    parts = [pd.read_csv(m / 'preds_test.csv', dtype={'image_id': str}).set_index('image_id')[vocab]
             for m in [*g.members, refit]]
    np.testing.assert_allclose(test.set_index('image_id')[vocab], sum(parts) / 3, atol=1e-6)
    assert g.result['valid_error'] == before == error(oof, vocab) and g.result['test_models'] == 3
    rows = json.loads(comp_cli('runs', '--json', '--folds', cwd=ws).stdout)
    assert next(x for x in rows if x['run'] == refit.name)['fold'] == 'all'
    assert refit.name not in {x['run'] for x in json.loads(comp_cli('runs', '--json', cwd=ws).stdout)}
    # the refit alone predicts a valid submission (with TTA: none on a validation set it does not have)
    out = predict.predict(refit, tta=1, workdir=ws)
    assert out['valid_error'] is None and out['valid_error_tta'] is None
    assert len(pd.read_csv(out['submission'])) == len(comp.test_ids())


def test_resume_keeps_the_groups_own_folds(groups):
    ws, a, _ = groups
    with pytest.raises(ConfigError, match='its own 2 folds: drop --folds'):
        cv.cv(None, folds=3, workdir=ws, resume=a)
    r = comp_cli('cv', '--resume', a.name, '--folds', '3', cwd=ws)
    assert r.returncode == 1 and 'drop --folds' in r.stderr and r.stderr.count('\n') == 1
    assert a.status == 'complete' and len(a.members) == 2
