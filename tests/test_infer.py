"""comp.infer, the engine of the inference notebook: the same probabilities as local prediction, from runs it only
reads; seeded TTA; a time guard that drops TTA passes, then the weakest members."""
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comp import ensemble, infer, predict, runs, submission
from comp.errors import CompError
from conftest import comp_cli, one_line


def digest(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def ens(two_runs):
    ws, a, b = two_runs
    rec = ensemble.ensemble([a.name, b.name], blend='2,1', name='infer-ens', workdir=ws)
    rec_tta = ensemble.ensemble([a.name, b.name], tta=2, name='infer-ens-tta', workdir=ws)
    return ws, a, b, rec, rec_tta


@pytest.mark.slow
def test_same_probabilities_and_submission_as_local_prediction_and_runs_untouched(ens, tmp_path):
    ws, a, b, rec, _ = ens
    before = digest(ws / runs.RUNS_DIR)
    out = infer.predict('infer-ens', runs_from=ws, out=tmp_path, workdir=ws, echo=lambda m: None)
    assert digest(ws / runs.RUNS_DIR) == before   # read, never written
    id_col = 'image_id'
    got = pd.read_csv(tmp_path / infer.OUT_PROBS).set_index(id_col)
    tests = [predict.predictions(r, workdir=ws)[0].set_index(id_col).loc[got.index] for r in (a, b)]
    want = (2 * tests[0] + tests[1]) / 3
    np.testing.assert_allclose(got[a.vocab].to_numpy(), want[a.vocab].to_numpy(), atol=1e-5)
    sub = pd.read_csv(tmp_path / infer.OUT_CSV)
    assert sub.equals(pd.read_csv(rec['submission']))
    assert out['runs'] == [a.name, b.name] and out['tta'] == 0 and not out['dropped']
    assert submission.validate(tmp_path / infer.OUT_CSV, workdir=ws) is not None


@pytest.mark.slow
def test_tta_is_seeded_per_model_and_pass_so_dropping_a_member_keeps_the_others(ens, tmp_path):
    ws, a, b, _, rec = ens
    one, two = tmp_path / 'one', tmp_path / 'two'
    one.mkdir(), two.mkdir()
    quiet = lambda m: None
    r1 = infer.predict('infer-ens-tta', runs_from=ws, out=one, workdir=ws, echo=quiet)
    infer.predict('infer-ens-tta', runs_from=ws, out=two, workdir=ws, echo=quiet)
    assert r1['tta'] == 2 and (one / infer.OUT_PROBS).read_text() == (two / infer.OUT_PROBS).read_text()
    # TTA passes differ from the plain prediction (the augmentations ran)
    plain = pd.read_csv(ws / 'submissions' / 'infer-ens.csv')
    assert len(plain) == len(pd.read_csv(one / infer.OUT_CSV))
    probs = pd.read_csv(one / infer.OUT_PROBS).set_index('image_id')
    local_plain = sum(predict.predictions(r, workdir=ws)[0].set_index('image_id').loc[probs.index] for r in (a, b)) / 2
    assert not np.allclose(probs[a.vocab].to_numpy(), local_plain[a.vocab].to_numpy(), atol=1e-4)


def test_the_plan_drops_tta_passes_first_then_the_weakest_members():
    members = [('good', 0.10), ('bad', 0.40), ('mid', 0.20), ('blind', None)]
    per_pass = {0: 4, 1: 3, 2: 2, 3: 1}   # seconds per member per pass
    cost = lambda t, kept: sum(per_pass[i] * (1 + t) for i in kept)
    assert infer.plan(members, 4, cost, left=1e9) == (4, [0, 1, 2, 3], [])
    t, kept, notes = infer.plan(members, 4, cost, left=30)   # all four members fit with 2 passes (10 * 3)
    assert (t, kept) == (2, [0, 1, 2, 3]) and len(notes) == 1 and 'TTA 4 -> 2' in notes[0]
    t, kept, notes = infer.plan(members, 4, cost, left=6)    # no TTA costs 10: the member with no error goes, then 'bad'
    assert t == 0 and kept == [0, 2] and 'dropped blind' in notes[1] and 'dropped bad' in notes[2]
    t, kept, notes = infer.plan(members, 4, cost, left=1)    # never fewer than one: the best, and it says so
    assert kept == [0] and 'going on' in notes[-1]
    assert infer.plan(members, 2, cost, left=6, fixed_members=True)[1] == [0, 1, 2, 3]   # a stack needs them all


@pytest.mark.slow
def test_a_time_limit_too_short_for_the_ensemble_drops_passes_and_says_so(ens, tmp_path):
    ws, _, _, _, rec = ens
    full = infer.estimate('infer-ens-tta', runs_from=ws, workdir=ws, echo=lambda m: None)
    proj = full['projected_s']
    assert proj[2] > proj[1] > proj[0] > 0 and full['images_per_s'] > 0
    said = []
    # a limit nothing fits in (measured times vary; this outcome does not): the plain pass of the best member,
    # written and valid, and every drop said
    out = infer.predict('infer-ens-tta', runs_from=ws, out=tmp_path, workdir=ws, echo=said.append, time_limit=1e-3)
    assert out['tta'] == 0 and len(out['runs']) == 1 and len(out['dropped']) == 3
    assert 'TTA 2 -> 0' in out['dropped'][0] and out['dropped'][1].startswith('dropped ') and 'going on' in out['dropped'][2]
    assert all(any(d in s for s in said) for d in out['dropped'])
    errs = dict(zip(rec['runs'], rec['run_valid_errors']))
    assert errs[out['runs'][0]] == min(errs.values())   # the weakest went
    assert json.loads((tmp_path / infer.OUT_RECORD).read_text())['dropped'] == out['dropped']
    assert submission.validate(tmp_path / infer.OUT_CSV, workdir=ws) is not None


def test_unknown_names_are_one_line(two_runs, tmp_path):
    ws, *_ = two_runs
    with pytest.raises(CompError, match='holds no submission or run'): infer.source('nothing-here', ws)
    with pytest.raises(CompError, match='has no default'): infer.source(None, tmp_path)


@pytest.mark.slow
def test_comp_infer_estimates_and_predicts_from_the_command_line(ens, tmp_path):
    ws, a, b, rec, _ = ens
    r = comp_cli('infer', 'infer-ens-tta', '--estimate', '1000', cwd=ws)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'infer-ens-tta: 1000 images' in r.stdout and all(f'with TTA {t}' in r.stdout for t in (2, 1, 0))
    r = comp_cli('infer', 'infer-ens', '--out', tmp_path, cwd=ws)
    assert r.returncode == 0 and (tmp_path / infer.OUT_CSV).read_text() == Path(rec['submission']).read_text(), r.stderr[-2000:]
    one_line(comp_cli('infer', 'no-such', cwd=ws), 'holds no submission or run', 'comp push-runs no-such')
