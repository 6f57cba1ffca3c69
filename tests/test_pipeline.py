"""Real training on a tiny timm model, then prediction, submission and score, through the library API."""
import json

import numpy as np
import pandas as pd
import pytest

from comp import competition, predict, runs, submission, train
from comp.train import TrainConfig

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def trained(tiny_sample, tmp_path_factory):
    ws = tmp_path_factory.mktemp('ws')
    competition.record(competition.load(tiny_sample), ws)
    run = train.train(TrainConfig(arch='test_convnext', epochs=2, workers=0), workdir=ws, quiet=True)
    return ws, run


def test_run_directory_records_everything(trained):
    ws, run = trained
    for f in ('config.json', 'env.json', 'metrics.csv', 'model.pth', 'vocab.json', 'preds_valid.csv',
              'result.json', 'loss.png', 'confusion.png'):
        assert (run / f).is_file(), f
    assert not (run / 'checkpoint.pth').exists()
    cfg = json.loads((run / 'config.json').read_text())
    assert [k for k, v in cfg.items() if v is None] == ['weights', 'folds', 'images']  # the rest filled in
    assert cfg['arch'] == 'test_convnext.r160_in1k' and cfg['size'] == [64, 64] and cfg['epochs'] == 2
    metrics = pd.read_csv(run / 'metrics.csv')
    assert list(metrics['epoch']) == [1, 2]
    assert {'train_loss', 'valid_loss', 'error_rate'} <= set(metrics.columns)
    assert runs.status(run) == 'complete'
    env = json.loads((run / 'env.json').read_text())
    assert env['packages']['fastai'] and env['packages']['timm']


def test_validation_error_matches_saved_predictions(trained, tiny_sample):
    ws, run = trained
    valid = pd.read_csv(run / 'preds_valid.csv')
    vocab = json.loads((run / 'vocab.json').read_text())
    assert vocab == sorted(vocab) and len(vocab) == 10
    err = (np.array(vocab)[valid[vocab].to_numpy().argmax(1)] != valid['label']).mean()
    assert json.loads((run / 'result.json').read_text())['valid_error'] == pytest.approx(err)
    np.testing.assert_allclose(valid[vocab].sum(1), 1, atol=1e-4)
    # the validation images are the stored shared split's, none of them in training
    split = pd.read_csv(ws / 'splits' / 'valid0.2_seed42.csv', dtype=str)
    assert set(valid['image_id']) == set(split.loc[split['fold'] == '0', 'image_id'])


def test_predict_writes_submission_in_sample_order_and_scores(trained, tiny_sample):
    ws, run = trained
    path = predict.predict(run, workdir=ws)
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
    assert submission.score(comp, path) == pytest.approx((sol['label'] == sub['label']).mean())
    side = json.loads(path.with_suffix('.json').read_text())
    assert side['runs'] == [run.name]
