"""`comp pseudo`: a derived competition whose training set adds the test images a submission is sure of; the shared
split and folds are the source's, and pseudo-labelled images never validate."""
import json

import pandas as pd
import pytest

from comp import competition, config, data, predict, pseudo, runs, train
from comp.errors import CompError
from conftest import comp_cli, one_line, snapshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def derived(two_runs, tmp_path_factory):
    """(source workspace, its run, the submission, the derived competition, threshold, the test probabilities)."""
    ws, a, _ = two_runs
    sub = predict.predict(a, workdir=ws, name='for-pseudo')['submission']
    test, _ = predict.predictions(a, workdir=ws)
    probs = test.set_index('image_id')[a.vocab]
    threshold = float(probs.max(axis=1).median())   # about half of the test images pass
    dest = tmp_path_factory.mktemp('pseudo') / 'paddy-pseudo'
    r = comp_cli('pseudo', sub, '--threshold', threshold, '--dest', dest, cwd=ws)
    assert r.returncode == 0, r.stderr[-2000:]
    return ws, a, sub, dest, threshold, probs


def test_the_confident_test_images_join_training_with_their_predicted_labels(derived, tiny_sample):
    ws, a, sub, dest, threshold, probs = derived
    src, comp = competition.load(tiny_sample), competition.load(dest)
    sure = probs[probs.max(axis=1) >= threshold]
    assert 0 < len(sure) < len(probs)
    listed = pd.read_csv(dest / 'pseudo.csv', dtype=str).set_index('image_id')
    assert set(listed.index) == set(sure.index) == comp.pseudo_ids()
    assert listed['label'].to_dict() == sure.idxmax(axis=1).to_dict()
    tr, old = comp.train_df(), src.train_df()
    assert list(tr['image_id'][:len(old)]) == list(old['image_id'])   # the real rows first, as they were
    assert sorted(tr['image_id'][len(old):]) == sorted(sure.index)
    for i, lbl in listed['label'].items():   # the test image itself, linked into its predicted label's folder
        assert (dest / 'train_images' / lbl / i).samefile(tiny_sample / 'test_images' / i)
    assert comp.test_ids() == src.test_ids()


def test_pseudo_labelled_images_never_validate_and_the_split_is_the_sources(derived, tmp_path):
    ws, a, sub, dest, threshold, probs = derived
    comp, ids = competition.load(dest), competition.load(dest).pseudo_ids()
    here = tmp_path / 'ws'
    here.mkdir()
    for kw in (dict(valid_pct=0.2), dict(folds=2)):   # computed afresh from the derived competition
        split = data.shared_split(comp, here, 42, **kw)
        source = data.shared_split(competition.load(a.config['data']), ws, 42, **kw)
        pd.testing.assert_frame_equal(split, source)
    run = train.train(config.TrainConfig(arch='test_convnext', epochs=1, workers=0, folds=2, fold=1, data=str(dest)),
                      workdir=here, quiet=True)
    valid = pd.read_csv(run / 'preds_valid.csv', dtype={'image_id': str})
    assert not set(valid['image_id']) & ids and len(valid) == (split['fold'] == 1).sum()
    assert run.result['n_train'] == len(comp.train_df()) - len(valid)   # every pseudo-labelled image trained
    rows = json.loads(comp_cli('runs', '--json', cwd=here).stdout)
    assert [r['pseudo'] for r in rows] == [len(ids)] and runs.summary(a)['pseudo'] == 0


def test_bad_pseudo_input(derived, tmp_path):
    ws, a, sub, dest, threshold, probs = derived
    with pytest.raises(CompError, match='--threshold 1.5'): pseudo.pseudo(sub, 1.5, tmp_path / 'x', workdir=ws)
    with pytest.raises(CompError, match='use a lower --threshold'): pseudo.pseudo(sub, 1.0, tmp_path / 'y', workdir=ws)
    with pytest.raises(CompError, match='is not empty'): pseudo.pseudo(sub, threshold, dest, workdir=ws)
    bare = tmp_path / 'bare.csv'
    bare.write_text(sub.read_text())   # a submission without its record
    with pytest.raises(CompError, match='no record of the runs'): pseudo.pseudo(bare, 0.5, tmp_path / 'z', workdir=ws)
    assert not any((tmp_path / d).exists() for d in 'xyz')
    with pytest.raises(CompError, match='--target disease'):
        config.resolve(config.TrainConfig(arch='test_convnext', target='disease+variety'), competition.load(dest))


def test_a_destination_inside_a_competition_is_refused_before_anything_is_written(derived):
    # Inside a competition (here the derived one: the source's own is test_holdout's case, with a copy), the new
    # folder made every later command on that competition fail ("labels differ from the folders").
    ws, a, sub, dest, threshold, probs = derived
    before, runs_before = snapshot(dest), snapshot(ws)
    for inside in (dest / 'train_images' / 'p', dest / 'p'):
        one_line(comp_cli('pseudo', sub, '--threshold', threshold, '--dest', inside, cwd=ws),
                 f'--dest {inside}', 'inside the competition', 'choose a folder outside it')
    assert snapshot(dest) == before and snapshot(ws) == runs_before
    competition.load(dest)
