"""CV groups: every fold trained, out-of-fold probabilities covering every training image once, fold-averaged test
probabilities, resume of an interrupted group, and groups in predict, ensemble and the runs table."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comp import competition, cv, ensemble, predict, runs
from comp.learner import error
from comp.config import TrainConfig
from comp.errors import ConfigError
from comp.machine import started
from conftest import comp_cli, ended_pid, interruptible, one_line, snapshot

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


# issue 27: groups are records like runs: one process at a time, a failed resume leaves a complete group as it was,
# a fold whose folder is gone is one line everywhere, a submission names the runs that made it.

def _copy_group(g, name, **config):
    """A copy of group `g` (its record only: the copy names the same fold runs), with config values replaced."""
    dest = g.path.parent / name
    shutil.copytree(g.path, dest)
    copy = runs.Run(dest)
    if config: copy.write_config({**copy.config, **config})
    return copy


def test_a_group_whose_fold_is_gone_is_one_line_everywhere_and_a_resume_keeps_it_complete(groups, tmp_path):
    ws, a, _ = groups
    damaged = ws / 'runs' / 'fold-damaged'
    shutil.copytree(a.members[1].path, damaged)
    (damaged / 'config.json').write_text('[]')
    gone = _copy_group(a, 'cv-gone', members=[a.members[0].name, 'no-such-run'])
    bad = _copy_group(a, 'cv-bad', members=[a.members[0].name, damaged.name])
    try:
        for g, words in ((gone, ['fold 1', 'no-such-run', 'gone']), (bad, [damaged.name, 'not a JSON object'])):
            before = snapshot(g.path)
            one_line(comp_cli('cv', '--resume', g.name, cwd=ws), *words)
            assert snapshot(g.path) == before and g.status == 'complete'   # status and result as they were
        one_line(comp_cli('predict', gone.name, cwd=ws), 'no-such-run', 'gone')
        one_line(comp_cli('ensemble', gone.name, a.name, cwd=ws), 'no-such-run', 'gone')
        r = comp_cli('runs', '--json', cwd=ws)
        assert r.returncode == 0, r.stderr[-2000:]
        row = next(x for x in json.loads(r.stdout) if x['run'] == gone.name)
        assert row['status'] == 'unreadable' and 'no-such-run' in row['why']
    finally:
        for d in (gone.path, bad.path, damaged): shutil.rmtree(d)


def test_a_group_resumed_by_another_process_is_refused(groups):
    ws, a, _ = groups
    busy = _copy_group(a, 'cv-busy')
    other = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])
    try:
        busy.status_file.write_text(json.dumps({'status': 'running', 'pid': other.pid, 'started': started(other.pid)}))
        before = snapshot(busy.path)
        one_line(comp_cli('cv', '--resume', busy.name, cwd=ws), busy.name, 'still running', str(other.pid))
        assert snapshot(busy.path) == before
    finally:
        other.kill()
        other.wait()
        shutil.rmtree(busy.path)


def test_a_failed_or_incomplete_group_predicts_nothing(groups):
    ws, a, _ = groups
    failed = _copy_group(a, 'cv-failed')
    failed.status_file.write_text(json.dumps({'status': 'failed', 'pid': ended_pid(), 'error': 'boom'}))
    unfinished = _copy_group(a, 'cv-unfinished')   # its folds are complete, the group is not (killed while combining)
    unfinished.status_file.write_text(json.dumps({'status': 'running', 'pid': ended_pid()}))
    try:
        for g, word in ((failed, 'failed (boom)'), (unfinished, 'incomplete')):
            one_line(comp_cli('predict', g.name, cwd=ws), f'CV group {g.name}', word, f'comp cv --resume {g.name}')
            one_line(comp_cli('ensemble', g.name, a.name, cwd=ws), f'CV group {g.name}', word)
    finally:
        shutil.rmtree(failed.path)
        shutil.rmtree(unfinished.path)


def test_weights_are_not_searched_on_runs_without_a_validation_set(groups):
    ws, _, b = groups
    refit = runs.find(b.name, ws).refit   # given in test_a_refit_trains_on_every_image_and_votes_on_the_test_images
    assert refit is not None
    twin = runs.Run(shutil.copytree(refit.path, ws / 'runs' / (refit.name + '-twin')))
    try:
        one_line(comp_cli('ensemble', refit.name, twin.name, '--search-weights', cwd=ws), '--search-weights', '--blend')
        r = comp_cli('ensemble', refit.name, twin.name, '--name', 'blind', cwd=ws)
        assert r.returncode == 0 and 'no validation set' in r.stdout, r.stderr[-2000:]
        text = (ws / 'submissions' / 'blind.json').read_text()
        assert 'NaN' not in text and 'valid_error' not in json.loads(text)
    finally:
        shutil.rmtree(twin.path)


def test_pseudo_refuses_a_submission_whose_group_has_changed_since(groups, tmp_path):
    ws, a, _ = groups
    g = _copy_group(a, 'cv-grows')
    try:
        r = comp_cli('predict', g.name, '--name', 'before-refit', cwd=ws)
        assert r.returncode == 0, r.stderr[-2000:]
        side = json.loads((ws / 'submissions' / 'before-refit.json').read_text())
        assert side['runs'] == [g.name] and side['members'] == {g.name: [m.name for m in a.members]}
        r = comp_cli('cv', '--resume', g.name, '--refit', cwd=ws)   # one more model votes on the test images
        assert r.returncode == 0 and runs.Run(g.path).refit is not None, r.stderr[-2000:]
        dest = tmp_path / 'pseudo'
        one_line(comp_cli('pseudo', 'submissions/before-refit.csv', '--threshold', '0.01', '--dest', dest, cwd=ws),
                 g.name, runs.Run(g.path).refit.name, f'comp predict {g.name}')
        assert not dest.exists()
    finally:
        refit = runs.Run(g.path).refit
        if refit is not None: shutil.rmtree(refit.path)
        shutil.rmtree(g.path)


def test_ctrl_c_on_a_group_says_how_to_resume_the_group_and_the_fold_stays_the_groups(workspace):
    exe = Path(sys.executable).parent / 'comp'
    p = subprocess.Popen([str(exe), 'cv', 'test_convnext', '--folds', '2', '--epochs', '3', '--workers', '0'],
                         cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.time() + 300   # a loaded machine imports and decodes slowly
    while time.time() < deadline and not list(workspace.glob('runs/*/metrics.csv')): time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    [group] = [r for r in runs.all_runs(workspace) if r.config.get('kind') == 'cv']
    assert p.returncode == 130 and err.strip().splitlines()[-1] == f'interrupted: resume with `comp cv --resume {group.name}`', err[-2000:]
    assert group.status == 'incomplete'
    # the interrupted fold is the group's: one row in the table, and resuming the group resumes it
    rows = json.loads(comp_cli('runs', '--json', cwd=workspace).stdout)
    assert [x['run'] for x in rows] == [group.name]
    folds = {r.name for r in runs.all_runs(workspace)} - {group.name}
    assert folds and folds <= set(group.part_names)
    r = comp_cli('cv', '--resume', group.name, cwd=workspace)
    assert r.returncode == 0, r.stderr[-2000:]
    done = runs.Run(group.path)
    assert done.status == 'complete' and {r.name for r in runs.all_runs(workspace)} == {group.name, *done.part_names}
    assert folds <= set(done.part_names) and len(done.part_names) == 2   # no fold trained twice
