"""The error handler as a new user meets it: bad input to any command is one line on stderr (exit 1, no traceback)
and writes nothing; an unexpected error, a full or read-only disk and Ctrl-C are one line too. Each module's own
errors are tested with the module (test_train, test_predict, test_resize, ...)."""
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from comp import competition, runs
from conftest import TRAIN, comp_cli, fake_run, interruptible, one_line, snapshot, tmpfs

slow = pytest.mark.slow


def _other_split(ws):
    (ws / 'splits').mkdir()
    pd.DataFrame({'image_id': ['1.jpg', '2.jpg'], 'fold': [0, 1]}).to_csv(ws / 'splits' / 'valid0.2_seed42.csv', index=False)


def _corrupt_comp_json(ws): (ws / 'comp.json').write_text('{"data": "/x", ')


CV = ('cv', 'test_convnext', '--folds', '2', '--epochs', '1', '--workers', '0')
AUTO = ('auto', '--candidates', 'test_convnext,test_vit', '--folds', '1', '--size', '32', '--workers', '0', '--dry-run', '--no-pretrained')
LAUNCHER = {'RANK': '0', 'WORLD_SIZE': '2', 'LOCAL_RANK': '0', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': '29531'}
NO_KAGGLE = {'KAGGLE_USERNAME': '', 'KAGGLE_KEY': '', 'KAGGLE_API_TOKEN': '', 'KAGGLE_CONFIG_DIR': '/nonexistent/comp-test-kaggle'}
NO_HUB = {'HF_HUB_OFFLINE': '1', 'HF_HOME': '/nonexistent/comp-test-hf'}   # no network, no cached weights


def _plan(text):
    """A set-up writing auto/plan.json (text, or a function of the workspace that returns it)."""
    def setup(ws):
        (ws / 'auto').mkdir()
        (ws / 'auto' / 'plan.json').write_text(text(ws) if callable(text) else text)
    return setup


def _edited_plan(ws):
    """A plan for exactly AUTO's arguments whose step was edited by hand into something no step is."""
    import json
    from comp.machine import device
    asked = {'hours': 1.0, 'candidates': ['test_convnext', 'test_vit'], 'folds': 1, 'tta': 4,
             'data': str(competition.find(None, ws).path), 'options': {'pretrained': False, 'size': '32', 'workers': 0},
             'device': device()}
    return json.dumps({'asked': asked, 'created': 'x', 'budget_s': 3600, 'tta': 4, 'probes': {}, 'skipped': [],
                       'steps': [{'kind': 'cv', 'arch': 'test_convnext', 'folds': 'two'}]})


def _auto_running(ws):
    """auto/ records a live `comp auto` (this test's own process stands in for it)."""
    import json
    import os
    from comp.machine import started
    (ws / 'auto').mkdir()
    (ws / 'auto' / 'running.json').write_text(json.dumps({'pid': os.getpid(), 'started': started(os.getpid())}))


def _other_kind(ws):
    """Record a competition of another kind (flat folders, a regressed number) as the workspace's."""
    from comp.sample import write_sample
    path = write_sample(ws.parent / 'pet', like='petfinder-pawpularity-score', scale=0.001)
    competition.record(competition.describe(path, metric='rmse'), ws)


# (id, argv, environment, set-up of the workspace, words the one line must hold): through the command line
CASES = [
    ('lr-nan', TRAIN + ('--lr', 'nan'), {}, None, ['--lr nan', 'positive']),
    ('bs-over-train-set', TRAIN + ('--bs', '5000'), {}, None, ['--bs 5000', 'training images']),
    ('fold-out-of-range', TRAIN + ('--folds', '3', '--fold', '5'), {}, None, ['--fold 5', 'between 0 and 2']),
    ('split-for-other-images', TRAIN, {}, _other_split, ['made for other training images']),
    ('cache-gb-garbage', TRAIN, {'COMP_DECODE_CACHE_GB': 'lots'}, None, ['COMP_DECODE_CACHE_GB']),
    ('corrupt-comp-json', TRAIN, {}, _corrupt_comp_json, ['comp.json', 'damaged']),
    ('submit-data-nowhere', ('submit', 'x.csv', '-m', 'm', '--data', 'nowhere'), {}, None, ['does not exist']),
    # issue 27, the Kaggle path: push-weights checks the weights it needs (the hub offline, nothing cached) first, so
    # the line names them even with no Kaggle credentials
    ('push-weights-hub-offline', ('push-weights', 'test_convnext'),
     {'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': '/nonexistent/comp-empty-hub', 'KAGGLE_USERNAME': '', 'KAGGLE_KEY': '',
      'KAGGLE_API_TOKEN': ''}, None, ['test_convnext.r160_in1k', 'HF_HUB_OFFLINE is set', 'HF_HUB_CACHE']),
    # issue 27, records, CV groups and comp auto: every fold's settings checked before the group exists, no launcher
    # for a group, no plan for an endless budget, a damaged plan named, what auto needs checked before it probes
    ('cv-bs-over-train-set', CV + ('--bs', '5000'), {}, None, ['--bs 5000', 'training images']),
    ('cv-under-a-launcher', CV, LAUNCHER, None, ['launcher', 'comp cv']),
    ('auto-hours-overflow', AUTO + ('--hours', '1e308'), {}, None, ['--hours 1e+308', 'positive number']),
    ('auto-plan-not-json', AUTO + ('--hours', '1'), {}, _plan('{"asked": '), ['plan.json', 'delete it']),
    ('auto-plan-wrong-shape', AUTO + ('--hours', '1'), {}, _plan('[]'), ['plan.json', 'damaged', 'delete it']),
    ('auto-plan-step-edited', AUTO + ('--hours', '1'), {}, _plan(_edited_plan), ['plan.json', 'damaged', 'delete it']),
    ('auto-already-running', AUTO + ('--hours', '1'), {}, _auto_running, ['already running', 'process']),
    ('auto-submit-no-credentials', tuple(a for a in AUTO if a != '--dry-run') + ('--hours', '0.001', '--submit'), NO_KAGGLE,
     None, ['no Kaggle credentials']),
    ('auto-no-weights', ('auto', '--hours', '1', '--dry-run', '--folds', '1', '--candidates', 'convnext_small,vit_small'), NO_HUB, None,
     ['convnext_small, vit_small', '--weights', '--no-pretrained']),
    # derived competitions, resize, settings (issue 27): each names the setting and a value that works
    ('holdout-frac-nan', ('holdout', 'ho', '--frac', 'nan'), {}, None, ['--frac nan', 'such as 0.25']),
    ('holdout-frac-inf', ('holdout', 'ho', '--frac', 'inf'), {}, None, ['--frac inf', 'such as 0.25']),
    ('holdout-frac-0', ('holdout', 'ho', '--frac', '0'), {}, None, ['--frac 0', 'such as 0.25']),
    ('holdout-frac-1', ('holdout', 'ho', '--frac', '1'), {}, None, ['--frac 1', 'such as 0.25']),
    ('holdout-frac-too-few-test', ('holdout', 'ho', '--frac', '0.01'), {}, None, ['--frac 0.01', 'too few', 'use --frac 0.25']),
    ('holdout-frac-too-few-train', ('holdout', 'ho', '--frac', '0.97'), {}, None, ['--frac 0.97', 'too few', 'use --frac 0.25']),
    ('holdout-frac-label-left-alone', ('holdout', 'ho', '--frac', '0.6'), {}, None, ['--frac 0.6', 'training image', 'use --frac']),
    ('holdout-dest-a-file', ('holdout', 'comp.json'), {}, None, ['comp.json is a file']),
    ('pseudo-dest-a-file', ('pseudo', 'x.csv', '--dest', 'comp.json'), {}, None, ['--dest comp.json is a file']),
    ('pseudo-threshold-nan', ('pseudo', 'x.csv', '--threshold', 'nan'), {}, None, ['--threshold nan', 'such as 0.9']),
    ('sample-dest-a-file', ('sample', 'comp.json', '--scale', '0.005'), {}, None, ['comp.json is a file']),
    ('sample-scale-inf', ('sample', 's', '--scale', 'inf'), {}, None, ['--scale', 'such as 0.05']),
    ('resize-negative-workers', ('resize', '--size', '64', '--workers', '-2'), {}, None, ['--workers -2', '1 or more']),
    ('mixup-inf', TRAIN + ('--mixup', 'inf'), {}, None, ['--mixup inf', 'such as 0.4']),
    ('cutmix-inf', TRAIN + ('--cutmix', 'inf'), {}, None, ['--cutmix inf', 'such as 1.0']),
    ('max-zoom-inf', TRAIN + ('--max-zoom', 'inf'), {}, None, ['--max-zoom inf', 'such as 1.1']),
    ('valid-pct-nan', TRAIN + ('--valid-pct', 'nan'), {}, None, ['--valid-pct nan', 'such as 0.2']),
    ('valid-pct-1', TRAIN + ('--valid-pct', '1'), {}, None, ['--valid-pct 1', 'such as 0.2']),
    ('sizes-shrink', TRAIN[:-4] + ('--epochs', '3', '--workers', '0', '--sizes', '128,96,160'), {}, None,
     ['--sizes', '96 after 128', 'such as 128,192,256']),
    ('sizes-bad-entry', TRAIN[:-4] + ('--epochs', '3', '--workers', '0', '--sizes', '64,b'), {}, None, ["--sizes 'b'"]),
    ('seed-negative', TRAIN + ('--seed', '-1'), {}, None, ['--seed -1', 'such as 42']),
    ('holdout-seed-negative', ('holdout', 'ho', '--seed', '-1'), {}, None, ['--seed -1', 'such as 42']),
    ('sample-seed-negative', ('sample', 's', '--scale', '0.005', '--seed', '-1'), {}, None, ['--seed -1', 'such as 42']),
    ('setup-set-without-value', ('setup', 'x', '--set', 'task'), {}, None, ['--set task', 'KEY=VALUE']),
    ('setup-unknown-metric', ('setup', 'x', '--metric', 'f2'), {}, None, ['--metric f2', 'qwk']),
    ('target-variety-elsewhere', TRAIN + ('--target', 'disease+variety'), {}, _other_kind, ['disease+variety', '--target disease']),
]


@pytest.mark.parametrize('argv, env, setup, words', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(workspace, argv, env, setup, words):
    if setup: setup(workspace)
    before = snapshot(workspace)
    r = comp_cli(*argv, cwd=workspace, env=env)
    one_line(r, *words)
    assert snapshot(workspace) == before  # no run folder, no split file, nothing changed


def test_bad_input_on_a_run_is_one_line(workspace, tiny_sample):
    incomplete = fake_run(workspace, tiny_sample)
    other = fake_run(workspace, tiny_sample)
    before = snapshot(workspace)
    for argv, words in [
            (('predict', incomplete.name, '--tta', '-2'), ['--tta -2']),
            (('predict', incomplete.name, '--tta', '2', '--beta', '1.5'), ['--beta 1.5', 'between 0 and 1']),
            (('predict', incomplete.name), ['incomplete', '--resume']),
            (('ensemble', incomplete.name, other.name), ['incomplete', '--resume']),
            (('ensemble', incomplete.name, other.name, '--blend', '1,x'), ['--blend']),
            (('train', '--resume', incomplete.name, '--lr', '0.1', '--epochs', '3'), ['saved config', '--lr', '--epochs'])]:
        one_line(comp_cli(*argv, cwd=workspace), *words)
    assert snapshot(workspace) == before


def test_hints_name_only_options_the_command_has(tmp_path):
    for cmd in (('submit', 'x.csv', '-m', 'm'), ('submissions',)):
        r = comp_cli(*cmd, cwd=tmp_path)
        one_line(r, '--data')
        assert '--data' in comp_cli(cmd[0], '--help', cwd=tmp_path).stdout


def test_an_unexpected_error_is_one_line_naming_its_type(tiny_copy, tmp_path):
    # A solution.csv that is not text: nothing in comp expects that, so it is no CompError, yet still one line.
    # (Ctrl-C's line is tested for real in test_ctrl_c_says_interrupted_and_how_to_resume.)
    good = tmp_path / 'good.csv'
    shutil.copy(tiny_copy / 'solution.csv', good)
    (tiny_copy / 'solution.csv').write_bytes(b'\xff\xfe\x00\x81 not text')
    r = comp_cli('score', good, '--data', tiny_copy, cwd=tmp_path)
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.startswith('error: unexpected UnicodeDecodeError') and 'COMP_DEBUG=1' in r.stderr
    r = comp_cli('score', good, '--data', tiny_copy, cwd=tmp_path, env={'COMP_DEBUG': '1'})
    assert r.returncode == 1 and 'Traceback' in r.stderr and 'UnicodeDecodeError' in r.stderr.splitlines()[-1]


def test_a_full_disk_leaves_no_temporary_and_says_how_much(tmp_path):
    from comp.errors import DiskError
    from comp.files import atomic_path
    with tmpfs(tmp_path / 'small') as d:
        with pytest.raises(DiskError, match='no room on the disk') as e:
            with atomic_path(d / 'checkpoint.pth') as tmp: Path(tmp).write_bytes(b'x' * 3 * 2 ** 20)
        assert 'MB' in str(e.value) or 'KB' in str(e.value)
        assert not list(d.iterdir())  # no partial temporary keeping the disk full
        # the command line: one line, and the hidden partial sample folder is gone too
        r = comp_cli('sample', d / 'paddy', '--scale', '0.01', cwd=tmp_path)
        one_line(r, 'no room')
        assert not list(d.iterdir())


def test_a_read_only_workspace_is_one_line(tiny_sample, tmp_path):
    with tmpfs(tmp_path / 'ro') as d:
        competition.record(competition.load(tiny_sample), d)
        subprocess.run(['mount', '-o', 'remount,ro', str(d)], check=True)
        one_line(comp_cli(*TRAIN, cwd=d), 'read-only')
        one_line(comp_cli('sample', 'x', cwd=d), 'read-only')


@slow
def test_ctrl_c_says_interrupted_and_how_to_resume(workspace):
    exe = Path(sys.executable).parent / 'comp'
    p = subprocess.Popen([str(exe), *TRAIN[:-4], '--epochs', '20', '--workers', '0'], cwd=workspace,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=interruptible)
    deadline = time.time() + 120
    while time.time() < deadline and not list(workspace.glob('runs/*/metrics.csv')): time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    run = next((workspace / 'runs').iterdir())
    assert p.returncode == 130 and err.strip() == f'interrupted: resume with `comp train --resume {run.name}`', err[-2000:]
    assert runs.Run(run).status == 'incomplete'
