"""Submission CSVs: every validation failure named, rows matched by id, scoring, atomic writes, never replaced
silently."""
import json

import pandas as pd
import pytest

from comp import competition, submission
from comp.errors import SubmissionError
from conftest import comp_cli


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
        submission.validate(f, competition.load(tiny_sample))
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
    submission.validate(f, comp)
    assert submission.score(f, comp) == pytest.approx(1 - 7 / len(sol))


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
        submission.score(f, competition.load(tiny_copy))


def test_a_submission_is_never_replaced_silently_nor_its_kaggle_record_lost(tiny_sample, tmp_path):
    comp = competition.load(tiny_sample)
    sol = pd.read_csv(tiny_sample / 'solution.csv', dtype=str)
    other = sol.assign(label=sol['label'].iloc[::-1].to_numpy())
    first = submission.write(comp, sol, 'ens', {'runs': ['a', 'b']}, tmp_path, default_name=True)
    side = submission.read_sidecar(first)
    side['kaggle'] = [{'ref': 7, 'public_score': '0.9'}]
    submission.sidecar_path(first).write_text(json.dumps(side))
    # the same submission again keeps what Kaggle said about it
    assert submission.write(comp, sol, 'ens', {'runs': ['a', 'b']}, tmp_path, default_name=True) == first
    assert submission.read_sidecar(first)['kaggle'] == [{'ref': 7, 'public_score': '0.9'}]
    # another ensemble under the same default name goes beside it
    second = submission.write(comp, other, 'ens', {'runs': ['a', 'c']}, tmp_path, default_name=True)
    assert second.name == 'ens-2.csv' and first.read_text() == sol.to_csv(index=False)
    assert submission.read_sidecar(first)['kaggle'] and submission.read_sidecar(second)['runs'] == ['a', 'c']
    # a name the user chose is refused rather than replaced
    with pytest.raises(SubmissionError, match='submitted to Kaggle'):
        submission.write(comp, other, 'ens', {'runs': ['a', 'c']}, tmp_path)
    assert submission.read_sidecar(first)['runs'] == ['a', 'b']
