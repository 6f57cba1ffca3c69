"""Prediction: test probabilities and submissions of a run, with and without TTA."""
import json

import numpy as np
import pandas as pd
import pytest

from comp import competition, predict, runs, submission
from comp.learner import error


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


