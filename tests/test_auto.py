"""comp auto: a dry run probes and plans within the budget and trains nothing; a small real run on the tiny sample
ends with a valid submission within its budget (plus at most one epoch), and a re-run resumes instead of
retraining; the deadline callback leaves a stopped run incomplete and resumable."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from comp import auto, competition, config, plan as planning, runs, submission, train
from comp.callbacks import Deadline, DeadlineReached
from comp.errors import ConfigError
from conftest import comp_cli, interruptible
from kaggle_server import FakeKaggle, client_env

pytestmark = pytest.mark.slow

DRY_HOURS = 1   # more than the two tiny candidates need at their recipes' epochs, so the plan takes every step
ARGS = dict(candidates='test_convnext,test_vit', folds=2, pretrained=False, size='32', workers=0)


@pytest.fixture(scope='module')
def ws(tiny_sample, tmp_path_factory):
    ws = tmp_path_factory.mktemp('auto')
    competition.record(competition.load(tiny_sample), ws)
    return ws


@pytest.fixture(scope='module')
def dry(ws):
    """`comp auto --dry-run` from the command line: (its output, the saved plan)."""
    r = comp_cli('auto', '--hours', DRY_HOURS, '--dry-run', '--candidates', ARGS['candidates'], '--folds', 2,
                 '--no-pretrained', '--size', 32, '--workers', 0, cwd=ws)
    assert r.returncode == 0, r.stderr[-3000:]
    return r, json.loads((ws / 'auto' / 'plan.json').read_text())


@pytest.fixture(scope='module')
def done(ws, dry):
    """The same `comp auto` for real, from the library, with 1.5 times the time the dry run's plan needs on this
    machine, however loaded (a few minutes): it goes on with that plan. (record, seconds, lines)"""
    said = []
    hours = 1.5 * dry[1]['estimate_s'] / 3600
    t0 = time.time()
    out = auto.auto(hours, workdir=ws, quiet=True, echo=said.append, **ARGS)
    return out, time.time() - t0, said


def test_dry_run_prints_a_plan_within_the_budget_and_trains_nothing(ws, dry):
    r, plan = dry
    assert 'plan for 60.0 min on cpu' in r.stdout and 'nothing trained (--dry-run)' in r.stdout
    assert plan['estimate_s'] <= plan['budget_s'] == DRY_HOURS * 3600
    assert [(s['arch'], s['kind'], s['folds'], s['epochs']) for s in plan['steps']] == [
        ('test_convnext', 'cv', 2, 2), ('test_vit', 'cv', 2, 2)] and plan['tta'] == 4   # all of it, best first
    assert set(plan['probes']) == {'test_convnext', 'test_vit'}
    for p in plan['probes'].values(): assert p['train_s'] > 0 and p['predict_s'] > 0
    for i, s in enumerate(plan['steps'], 1): assert f'  {i}. {s["arch"]}: ' in r.stdout
    assert not (ws / 'runs').exists()


def _work(plan):
    """Model-epochs a plan trains."""
    return sum(s['epochs'] * s['folds'] for s in plan['steps'])


def test_a_shorter_budget_plans_fewer_steps_folds_or_epochs(dry):
    _, saved = dry
    probes, n, n_test = saved['probes'], saved['n_train'], saved['n_test']
    cheapest = min(planning._cost(planning._step(a, p, 1, 0, n, n_test, 0.2, 0)) for a, p in probes.items())
    short_b = 1.2 * (cheapest + planning.FINAL_S + 5)    # room for the cheapest step, the final reserve and the margin
    plans = {b: planning.make_plan(probes, b, n, n_test, folds=2) for b in (cheapest / 2, short_b, 1000, 10 ** 5)}
    for b, plan in plans.items():
        assert plan['planned_s'] + plan['margin_s'] <= b or not plan['steps']
    assert plans[cheapest / 2]['steps'] == []                    # nothing fits: `comp auto` says so (below)
    short, long_ = plans[short_b], plans[10 ** 5]
    assert len(short['steps']) == 1
    assert [s['arch'] for s in long_['steps']] == ['test_convnext', 'test_vit']   # best first, all of them
    assert all(s['folds'] == 2 and s['epochs'] == 2 for s in long_['steps']) and long_['tta'] == 4
    works = [_work(plans[b]) for b in sorted(plans)]
    assert works == sorted(works) and works[1] < works[-1]
    msg = planning._too_short({**plans[cheapest / 2], 'budget_s': cheapest / 2, 'probe_s': 1})
    assert msg.startswith('no candidate fits') and '--hours' in msg


def test_a_refit_is_planned_and_costed_within_the_budget(dry):
    _, saved = dry
    probes, n, n_test = saved['probes'], saved['n_train'], saved['n_test']
    plain, refit = (planning.make_plan(probes, 10 ** 5, n, n_test, folds=2, tta=0, refit=r) for r in (False, True))
    assert [s['arch'] for s in refit['steps']] == [s['arch'] for s in plain['steps']] and refit['steps']
    for a, b in zip(plain['steps'], refit['steps']):
        assert b['refit'] and 'refit' not in a and b['epochs'] == a['epochs'] and b['estimate_s'] > a['estimate_s']
    assert '2-fold CV + refit' in '\n'.join(planning.describe(refit))
    # a budget that just fits the plain plan has no room for its refits: less is planned
    b = (plain['planned_s'] + 5) / (1 - 0.02) + 0.5   # just above what the plain plan needs with its margin (plan.margin)
    assert planning.make_plan(probes, b, n, n_test, folds=2, tta=0)['steps'] == plain['steps']
    tight = planning.make_plan(probes, b, n, n_test, folds=2, tta=0, refit=True)
    assert tight['planned_s'] + tight['margin_s'] <= b
    assert _work(tight) < _work(plain)


def test_a_small_real_run_ends_with_a_valid_submission_within_its_budget(ws, dry, done):
    out, secs, said = done
    # A dry run plans, it does not commit (issue 27): its probes serve, and the plan is made for this budget.
    assert dry[1]['dry_run'] and said[0].startswith('using the probes of the dry run')
    assert out['plan']['probes'] == dry[1]['probes'] and 'dry_run' not in out['plan']
    assert out['plan']['budget_s'] == out['budget_s'] < dry[1]['budget_s']
    submission.validate(out['submission'], workdir=ws)
    finished = [s for s in out['steps'] if s['status'] == 'complete']
    assert finished and [s['run'] for s in finished] == out['runs']
    # The longest epoch of any run it trained (a step stopped at the deadline included).
    epoch = max(r.metrics()['seconds'].max() for r in runs.all_runs(ws) if len(r.metrics()))
    assert secs <= out['budget_s'] + epoch
    side = submission.read_sidecar(out['submission'])
    assert side['runs'] == out['runs']
    if len(out['runs']) > 1: assert side['valid_error'] == out['valid_error'] and 'search_gain' in side
    assert json.loads((ws / 'auto' / 'outcome.json').read_text())['submission'] == out['submission']


def test_running_it_again_resumes_instead_of_retraining_and_submits(ws, done, tiny_sample, tmp_path):
    out, _, _ = done
    finished = [runs.Run(ws / 'runs' / s['run']) for s in out['steps'] if s['status'] == 'complete']
    models = [f for r in finished for f in ([m.model_file for m in r.members] or [r.model_file])]
    stamps = [f.stat().st_mtime_ns for f in models]
    before = {r.name for r in runs.all_runs(ws)}
    fake = FakeKaggle().start()
    try:
        fake.add_competition(competition.PADDY, tiny_sample)
        home = tmp_path / 'home'
        home.mkdir()
        # A notebook run again with the time it has left: the same plan, what finished is not trained again.
        r = comp_cli('auto', '--hours', out['budget_s'] / 10 / 3600, '--candidates', ARGS['candidates'], '--folds', 2, '--no-pretrained',
                     '--size', 32, '--workers', 0, '--submit', cwd=ws, env={**client_env(fake, home), 'COMP_KAGGLE_POLL': '0.1'})
        assert r.returncode == 0, r.stderr[-3000:]
        for run in finished: assert f'{run.name} already complete' in r.stdout
        assert [f.stat().st_mtime_ns for f in models] == stamps
        assert 'using the plan saved at' in r.stdout
        assert before <= {x.name for x in runs.all_runs(ws)}
        again = json.loads((ws / 'auto' / 'outcome.json').read_text())
        steps = {s['run']: s for s in again['steps'] if 'run' in s}
        assert all(steps[run.name]['status'] == 'complete' and steps[run.name]['seconds'] == 0 for run in finished)
        assert set(out['runs']) <= set(again['runs'])
        sub = ws / again['submission']   # as the command said it: relative to its folder
        submission.validate(sub, workdir=ws)
        [sent] = fake.submissions
        assert sent['data'] == sub.read_bytes() and sent['description'].startswith('comp auto: ')
        assert str(submission.read_sidecar(sub)['kaggle'][0]['ref']) == str(sent['ref'])
    finally:
        fake.stop()


def test_bad_arguments_fail_in_one_line_before_probing(ws):
    for args, words in [(('--hours', 0), '--hours 0.0: use a positive number'),
                        (('--hours', 1, '--candidates', 'convnext_smal'), 'did you mean convnext_small')]:
        r = comp_cli('auto', *args, '--dry-run', cwd=ws)
        assert r.returncode == 1 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr[-2000:]
    with pytest.raises(ConfigError, match='comp auto chooses epochs itself'):
        auto.auto(1, workdir=ws, epochs=3, **ARGS)
    with pytest.raises(ConfigError, match='--folds 0: use 1'):
        auto.auto(1, workdir=ws, **{**ARGS, 'folds': 0})
    with pytest.raises(ConfigError, match='--tta -1'):
        auto.auto(1, workdir=ws, tta=-1, **ARGS)


def test_a_run_stopped_at_its_deadline_is_incomplete_and_resumes(ws):
    cfg = config.TrainConfig(arch='test_convnext', epochs=1, workers=0, seed=7)
    stop = Deadline(time.time() + 3600, epoch_s=7200, what='the test deadline')   # no epoch fits in what is left
    with pytest.raises(DeadlineReached, match='stopped at the test deadline'):
        train.train(cfg, workdir=ws, quiet=True, cbs=[stop])
    run = runs.all_runs(ws)[-1]
    assert run.status == 'incomplete' and run.epochs_done == 0 and not run.model_file.exists()
    assert 'stopped at the test deadline' in run.status_record()['error']
    resumed = train.train(None, workdir=ws, resume=run, quiet=True, cbs=[Deadline(time.time() + 3600, epoch_s=1)])
    assert resumed.status == 'complete' and len(resumed.metrics()) == 1


def test_ctrl_c_says_to_run_the_same_auto_again(workspace):
    # issue 27: the hint resumes the whole job, not the step's run or group that was training
    exe = Path(sys.executable).parent / 'comp'
    p = subprocess.Popen([str(exe), 'auto', '--hours', '1', '--candidates', 'test_convnext', '--folds', '2', '--no-pretrained',
                          '--size', '32', '--workers', '0'], cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.time() + 300
    while time.time() < deadline and not list(workspace.glob('runs/*/metrics.csv')): time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == ('interrupted: resume with the same `comp auto` command (at most the same '
                                            '--hours): it goes on with its plan'), err[-2000:]
    assert not (workspace / 'auto' / 'running.json').exists()   # the next comp auto is not refused
