"""Holdout competitions carved from a training set, to score offline."""
import pandas as pd

from comp import competition, holdout, submission


def test_holdout_layout_stratified_and_disjoint(small_sample, tmp_path):
    src = competition.load(small_sample)
    dest = holdout.holdout(tmp_path / 'ho', frac=0.25, seed=3, data=src)
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
    assert submission.score(perfect, ho) == 1.0
