"""Prediction: test probabilities and submissions of a run, with and without TTA; stored predictions keyed on every
TTA setting; what Kaggle said about a submission kept when predicting again."""
import json

import numpy as np
import pandas as pd
import pytest

from comp import competition, predict, runs, submission
from comp.learner import error
from conftest import comp_cli, one_line


@pytest.mark.slow
def test_predict_writes_submission_in_sample_order_and_scores(two_runs, tiny_sample):
    ws, run, _ = two_runs
    rec = predict.predict(run, workdir=ws)
    path = rec['submission']
    assert rec['runs'] == [run.name] and rec['valid_error'] == run.result['valid_error']
    assert path.parent == ws / 'submissions'
    sub = pd.read_csv(path, dtype=str)
    sample = pd.read_csv(tiny_sample / 'sample_submission.csv', dtype=str)
    assert list(sub['image_id']) == list(sample['image_id'])
    probs = pd.read_csv(run / 'preds_test.csv', dtype={'image_id': str})
    vocab = json.loads((run / 'vocab.json').read_text())
    by_id = dict(zip(probs['image_id'], np.array(vocab)[probs[vocab].to_numpy().argmax(1)]))
    assert [by_id[i] for i in sub['image_id']] == list(sub['label'])
    sol = pd.read_csv(tiny_sample / 'solution.csv', dtype=str)
    comp = competition.load(tiny_sample)
    assert submission.score(path, comp) == pytest.approx((sol['label'] == sub['label']).mean())
    side = json.loads(path.with_suffix('.json').read_text())
    assert side['runs'] == [run.name]


@pytest.mark.slow
def test_predict_tta_records_both_errors_and_runs_shows_them(two_runs):
    ws, a, _ = two_runs
    path = predict.predict(a, tta=2, workdir=ws)['submission']
    res = json.loads((a / 'result.json').read_text())
    valid = pd.read_csv(a.preds_file('valid', 2, 0.25))
    vocab = json.loads((a / 'vocab.json').read_text())
    assert res['valid_error_tta'] == pytest.approx(error(valid, vocab))
    side = submission.read_sidecar(path)
    assert side['tta'] == 2 and side['beta'] == 0.25 and side['valid_error_tta'] == res['valid_error_tta']
    row = next(r for r in runs.table(ws) if r['run'] == a.name)
    assert row['tta_error'] == res['valid_error_tta'] and row['error'] == res['valid_error']


@pytest.mark.slow
def test_stored_tta_predictions_are_keyed_on_every_setting(trained):
    ws, run = trained
    a = predict.predict(run, tta=2, beta=0.9, workdir=ws)
    b = predict.predict(run, tta=3, beta=0.9, workdir=ws)
    c = predict.predict(run, tta=2, beta=0.25, workdir=ws)
    assert a['submission'] != c['submission']
    assert not run.preds_file('test', 2, 0.9).read_bytes() == run.preds_file('test', 2, 0.25).read_bytes()
    vocab = run.vocab
    for rec, (n, beta) in ((a, (2, 0.9)), (b, (3, 0.9)), (c, (2, 0.25))):
        valid = run.read_preds('valid', n, 'image_id', beta)
        assert rec['valid_error_tta'] == pytest.approx(error(valid, vocab))
        assert submission.read_sidecar(rec['submission'])['beta'] == beta
    res = runs.Run(run.path).result
    assert set(res['tta_errors']) == {'tta2_beta0.9', 'tta3_beta0.9', 'tta2_beta0.25'}
    assert res['tta'] == 2 and res['beta'] == 0.25 and res['valid_error_tta'] == c['valid_error_tta']
    # asked again, the first setting reads its own stored file and reports its own error
    again = predict.predict(run, tta=2, beta=0.9, workdir=ws)
    assert again['valid_error_tta'] == a['valid_error_tta'] and again['submission'] == a['submission']


@pytest.mark.slow
def test_predict_again_keeps_the_kaggle_record(trained):
    ws, run = trained
    r = comp_cli('predict', run.name, cwd=ws)
    assert r.returncode == 0, r.stderr[-2000:]
    sub = ws / r.stdout.split('submission: ')[1].strip()
    side = submission.read_sidecar(sub)
    side['kaggle'] = [{'ref': 1, 'public_score': '0.5'}]
    submission.sidecar_path(sub).write_text(json.dumps(side))
    r = comp_cli('predict', run.name, cwd=ws)
    assert r.returncode == 0 and submission.read_sidecar(sub)['kaggle'] == [{'ref': 1, 'public_score': '0.5'}]
    r = comp_cli('predict', run.name, '--tta', '2', '--name', sub.stem, cwd=ws)
    one_line(r, 'already holds other predictions', 'submitted to Kaggle')
    assert submission.read_sidecar(sub)['kaggle'] == [{'ref': 1, 'public_score': '0.5'}]
