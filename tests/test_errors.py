"""Bad inputs and faults, as a new user meets them: each is one line on stderr (exit 1, no traceback) and writes or
loses nothing; and the faults that used to give silently wrong results or lose records (issue 18)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from comp import competition, resize, runs, submission
from comp.errors import CompError, SubmissionError
from conftest import comp_cli

slow = pytest.mark.slow


def one_line(r, *words):
    """The command failed as a user error should: exit 1, one stderr line, no traceback, the words in it."""
    assert r.returncode == 1, r.stdout[-1000:] + r.stderr[-2000:]
    assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    for w in words: assert w in r.stderr, r.stderr


def snapshot(ws):
    """Every file under the workspace with its bytes: what a failed command must leave as it was."""
    return {p.relative_to(ws).as_posix(): p.read_bytes() for p in sorted(Path(ws).rglob('*')) if p.is_file()}


def fake_run(ws, tiny_sample, status='incomplete', **extra):
    """A run folder as `runs.create` makes it, without training, in status `status` (from a process that is gone)."""
    from comp.config import TrainConfig, resolve
    c = resolve(TrainConfig(arch='test_convnext', epochs=1, workers=0), competition.load(tiny_sample))
    run = runs.create(ws, c)
    rec = {**run.status_record(), 'status': status, 'pid': ended_pid(), **extra}
    run.status_file.write_text(json.dumps(rec))
    return run


def ended_pid():
    return int(subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout)


def _other_split(ws):
    (ws / 'splits').mkdir()
    pd.DataFrame({'image_id': ['1.jpg', '2.jpg'], 'fold': [0, 1]}).to_csv(ws / 'splits' / 'valid0.2_seed42.csv', index=False)


def _corrupt_comp_json(ws): (ws / 'comp.json').write_text('{"data": "/x", ')


TRAIN = ('train', '--arch', 'test_convnext', '--epochs', '1', '--workers', '0')

# (id, argv, environment, set-up of the workspace, words the one line must hold): through the command line
CASES = [
    ('lr-nan', TRAIN + ('--lr', 'nan'), {}, None, ['--lr nan', 'positive']),
    ('bs-over-train-set', TRAIN + ('--bs', '5000'), {}, None, ['--bs 5000', 'training images']),
    ('fold-out-of-range', TRAIN + ('--folds', '3', '--fold', '5'), {}, None, ['--fold 5', 'between 0 and 2']),
    ('split-for-other-images', TRAIN, {}, _other_split, ['made for other training images']),
    ('cache-gb-garbage', TRAIN, {'COMP_DECODE_CACHE_GB': 'lots'}, None, ['COMP_DECODE_CACHE_GB']),
    ('corrupt-comp-json', TRAIN, {}, _corrupt_comp_json, ['comp.json', 'damaged']),
    ('submit-data-nowhere', ('submit', 'x.csv', '-m', 'm', '--data', 'nowhere'), {}, None, ['does not exist']),
]


@pytest.mark.parametrize('argv, env, setup, words', [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(workspace, argv, env, setup, words):
    if setup: setup(workspace)
    before = snapshot(workspace)
    r = comp_cli(*argv, cwd=workspace, env=env)
    one_line(r, *words)
    assert snapshot(workspace) == before  # no run folder, no split file, nothing changed


# The same checks in the library, which the command line calls: each fails before a run folder exists.
SETTINGS = [
    (dict(lr='-1'), '--lr -1.0: use a positive'), (dict(lr='inf'), '--lr inf'), (dict(lr=0), '--lr 0'),
    (dict(bs=5000), 'no batch would train'), (dict(workers=-1), '--workers -1'), (dict(folds=1), '--folds 1'),
    (dict(folds=3, fold=3), '--fold 3'), (dict(folds=50), 'fewer folds'), (dict(valid_pct=1.5), '--valid-pct 1.5'),
    (dict(valid_pct=0.001), 'another fraction'), (dict(pretrained=True, weights='/no/such.pth'), 'no such file'),
    (dict(size='[]'), "--size '[]'"), (dict(size=4), '--size 4'), (dict(valid_pct=-0.1), '--valid-pct -0.1'),
    (dict(valid_pct=0, keep='best'), 'no validation set'),
]


@pytest.mark.parametrize('kw, msg', SETTINGS, ids=[m for _, m in SETTINGS])
def test_impossible_settings_fail_before_a_run_exists(workspace, kw, msg):
    from comp import config, train
    before = snapshot(workspace)
    with pytest.raises(CompError, match=msg.replace('[', r'\[').replace(']', r'\]')):
        train.train(config.TrainConfig(**{'arch': 'test_convnext', 'epochs': 1, 'workers': 0, **kw}), quiet=True)
    assert snapshot(workspace) == before and not (workspace / 'runs').exists()


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


def test_a_complete_run_missing_its_model_says_what_is_missing(workspace, tiny_sample):
    run = fake_run(workspace, tiny_sample, status='complete')
    run.write_vocab(['a'])
    run.write_result({'valid_error': 0.5})
    for argv in (('train', '--resume', run.name), ('predict', run.name)):
        r = comp_cli(*argv, cwd=workspace)
        one_line(r, 'model.pth is missing')
        assert 'already complete' not in r.stderr


def test_a_corrupt_record_is_one_line_and_breaks_no_other_run(workspace, tiny_sample):
    good, bad = fake_run(workspace, tiny_sample), fake_run(workspace, tiny_sample)
    bad.status_file.write_text('{"status": "runn')
    r = comp_cli('runs', '--json', cwd=workspace)
    assert r.returncode == 0, r.stderr
    rows = {row['run']: row for row in json.loads(r.stdout)}
    assert rows[good.name]['status'] == 'incomplete' and rows[bad.name]['status'] == 'unreadable'
    assert 'status.json' in rows[bad.name]['why']
    one_line(comp_cli('train', '--resume', bad.name, cwd=workspace), 'status.json is not valid JSON')


def test_a_sample_submission_with_no_rows(tiny_copy, tmp_path):
    (tiny_copy / 'sample_submission.csv').write_text('image_id,label\n')
    before = sorted(tmp_path.iterdir())
    one_line(comp_cli('validate', 'x.csv', '--data', tiny_copy, cwd=tmp_path), 'sample_submission.csv has no rows')
    assert sorted(tmp_path.iterdir()) == before  # nothing written


def test_hints_name_only_options_the_command_has(tmp_path):
    for cmd in (('submit', 'x.csv', '-m', 'm'), ('submissions',)):
        r = comp_cli(*cmd, cwd=tmp_path)
        one_line(r, '--data')
        assert '--data' in comp_cli(cmd[0], '--help', cwd=tmp_path).stdout


def test_kaggle_variables_garbage_and_no_network_with_a_token(tmp_path, workspace):
    import socket
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    env = {'KAGGLE_API_ENVIRONMENT': 'LOCALHOST', 'HTTP_PROXY': f'http://127.0.0.1:{port}', 'http_proxy': f'http://127.0.0.1:{port}',
           'NO_PROXY': '', 'no_proxy': '', 'HOME': str(tmp_path), 'KAGGLE_CONFIG_DIR': str(tmp_path / '.kaggle'),
           'KAGGLE_USERNAME': '', 'KAGGLE_KEY': '', 'KAGGLE_API_TOKEN': 'KGAT_some_token', 'COMP_KAGGLE_BACKOFF': '0.01'}
    t0 = time.time()
    one_line(comp_cli('submissions', cwd=workspace, env=env), 'could not reach Kaggle')
    assert time.time() - t0 < 20
    one_line(comp_cli('submissions', cwd=workspace, env={**env, 'COMP_KAGGLE_BACKOFF': 'soon'}), 'COMP_KAGGLE_BACKOFF')


def test_an_unresolvable_kaggle_host_fails_at_once(monkeypatch):
    import requests
    from comp import kaggle
    for k in ('HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy', 'ALL_PROXY', 'all_proxy'): monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('COMP_KAGGLE_BACKOFF', '2')  # four retries would take 30 s
    t0 = time.time()
    with pytest.raises(CompError, match='does not resolve'):
        kaggle.call('list submissions', requests.get, 'http://kaggle.host.invalid/api', timeout=5)
    assert time.time() - t0 < 8


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


def test_small_messages(tiny_copy, monkeypatch, tmp_path):
    from PIL import Image
    from comp import zoo
    assert 'did you mean x?' not in zoo._did_you_mean('x', ['x', 'xy'])
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
    assert competition._decodes(next((tiny_copy / 'test_images').iterdir())) == 'too large'
    monkeypatch.undo()
    df = pd.read_csv(tiny_copy / 'train.csv', dtype=str, keep_default_na=False)
    df.loc[0, 'label'] = ''
    df.to_csv(tiny_copy / 'train.csv', index=False)
    found = ' '.join(competition.problems_of(competition.Competition(tiny_copy), check_images=False))
    assert 'empty label' in found and df.loc[0, 'image_id'] in found
    assert "(no folder for: '')" in found


def test_a_missing_decode_cache_folder_falls_back_and_says_so(monkeypatch, tmp_path):
    from comp import cache
    monkeypatch.setenv('COMP_DECODE_CACHE_DIR', str(tmp_path / 'not-there'))
    where, why = cache.plan(('squish', (96, 96)), 10)
    assert where is not None and 'not-there' in why and 'is not a folder' in why and 'no room' not in why


def test_a_killed_sample_leaves_nothing_behind_for_long(tmp_path):
    left = tmp_path / f'.paddy.{ended_pid()}.abc'
    (left / 'train_images').mkdir(parents=True)  # what a killed `comp sample paddy` left
    r = comp_cli('sample', 'paddy', '--scale', '0.005', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not left.exists() and sorted(p.name for p in tmp_path.iterdir()) == ['comp.json', 'paddy']


def test_a_killed_resize_redoes_only_what_it_had_not_done(tiny_copy, tmp_path, monkeypatch):
    comp = competition.load(tiny_copy)
    last = sorted((tiny_copy / 'train_images' / 'tungro').iterdir())[-1]  # the last image resize does
    good = last.read_bytes()
    last.write_bytes(b'not a jpeg')  # resize dies on the last image, as if killed there
    monkeypatch.setattr(resize, 'CHUNK', 8)
    with pytest.raises(Exception): resize.resize(128, comp, workdir=tmp_path, workers=1)
    last.write_bytes(good)
    total = len(comp.train_df()) + len(comp.test_ids())
    _, n = resize.resize(128, comp, workdir=tmp_path, workers=1)
    assert n <= 8  # the last chunk only, not every image again
    assert not resize.stale(comp, resize.resized_path(tmp_path, 128)) and n < total


# --- silently wrong results and lost records: each test fails on the code before issue 18 -------------------------

def test_a_stale_resized_copy_is_never_used(tiny_copy, tmp_path):
    from PIL import Image
    comp = competition.load(tiny_copy)
    path, _ = resize.resize(128, comp, workdir=tmp_path, workers=1)
    assert resize.usable(comp, tmp_path, (96, 96)) == path
    src = sorted((tiny_copy / 'train_images' / 'normal').iterdir())[0]
    Image.new('RGB', (480, 640), (10, 200, 10)).save(src)  # overwritten after `comp resize`
    notes = []
    assert resize.usable(comp, tmp_path, (96, 96), notes) is None
    assert src.name in notes[0] and 'comp resize --size 128' in notes[0]
    resize.resize(128, comp, workdir=tmp_path, workers=1)
    assert resize.usable(comp, tmp_path, (96, 96)) == path
    # An image moved to another label folder (train.csv following it) is not in the copy where training looks.
    df = pd.read_csv(tiny_copy / 'train.csv', dtype=str)
    i = df.index[df['label'] == 'blast'][0]
    moved = df.loc[i, 'image_id']
    shutil.move(tiny_copy / 'train_images' / 'blast' / moved, tiny_copy / 'train_images' / 'hispa' / moved)
    df.loc[i, 'label'] = 'hispa'
    df.to_csv(tiny_copy / 'train.csv', index=False)
    notes = []
    assert resize.usable(competition.load(tiny_copy), tmp_path, (96, 96), notes) is None and moved in notes[0]


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


def test_resume_is_refused_while_the_run_trains_elsewhere_and_a_reused_pid_is_not_trusted(workspace, tiny_sample):
    from comp import machine, train
    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        run = fake_run(workspace, tiny_sample, status='running', pid=p.pid, started=machine.started(p.pid))
        assert run.status == 'running'
        with pytest.raises(CompError, match='still training'): train.train(resume=run.name, workdir=workspace)
        one_line(comp_cli('train', '--resume', run.name, cwd=workspace), 'still training')
        # the same pid, but not the process that started the run: it is gone
        rec = {**run.status_record(), 'started': machine.started(p.pid) - 1}
        run.status_file.write_text(json.dumps(rec))
        assert run.status == 'incomplete'
    finally:
        p.kill()
        p.wait()


def test_a_full_disk_leaves_no_temporary_and_says_how_much(tmp_path):
    from comp.errors import DiskError
    from comp.files import atomic_path
    d = tmp_path / 'small'
    d.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(d)], capture_output=True).returncode:
        pytest.skip('cannot mount a small tmpfs here (needs root): no full disk to test with')
    try:
        with pytest.raises(DiskError, match='no room on the disk') as e:
            with atomic_path(d / 'checkpoint.pth') as tmp: Path(tmp).write_bytes(b'x' * 3 * 2 ** 20)
        assert 'MB' in str(e.value) or 'KB' in str(e.value)
        assert not list(d.iterdir())  # no partial temporary keeping the disk full
        # the command line: one line, and the hidden partial sample folder is gone too
        r = comp_cli('sample', d / 'paddy', '--scale', '0.01', cwd=tmp_path)
        one_line(r, 'no room')
        assert not list(d.iterdir())
    finally:
        subprocess.run(['umount', str(d)])


def test_a_read_only_workspace_is_one_line(tiny_sample, tmp_path):
    d = tmp_path / 'ro'
    d.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(d)], capture_output=True).returncode:
        pytest.skip('cannot mount a tmpfs here (needs root; chmod does not stop root): no read-only folder to test with')
    try:
        competition.record(competition.load(tiny_sample), d)
        subprocess.run(['mount', '-o', 'remount,ro', str(d)], check=True)
        one_line(comp_cli(*TRAIN, cwd=d), 'read-only')
        one_line(comp_cli('sample', 'x', cwd=d), 'read-only')
    finally:
        subprocess.run(['umount', str(d)])


# --- with one trained run ------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def trained(tiny_sample, tmp_path_factory):
    """(workspace, run): one tiny test_convnext run for every predict and resume case here; tests may add files."""
    from comp import config, train
    ws = tmp_path_factory.mktemp('errors-ws')
    competition.record(competition.load(tiny_sample), ws)
    return ws, train.train(config.TrainConfig(arch='test_convnext', epochs=1, workers=0), workdir=ws, quiet=True)


@slow
def test_stored_tta_predictions_are_keyed_on_every_setting(trained):
    from comp import predict
    from comp.learner import error
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


@slow
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


@slow
def test_a_truncated_checkpoint_on_resume_is_one_line(trained):
    ws, run = trained
    copy = runs.Run(shutil.copytree(run.path, run.path.parent / (run.name + '-cut')))
    copy.checkpoint_file.write_bytes(copy.model_file.read_bytes()[:1000])
    copy.model_file.unlink()
    copy.result_file.unlink()
    copy.status_file.write_text(json.dumps({'status': 'incomplete', 'epochs_done': 1}))
    one_line(comp_cli('train', '--resume', copy.name, cwd=ws), 'checkpoint.pth cannot be read', 'delete it')


@slow
def test_a_loss_that_is_not_finite_fails_the_run(workspace):
    r = comp_cli(*TRAIN, '--lr', '1e30', cwd=workspace)
    one_line(r, 'training stopped in epoch 1', 'lower --lr')
    run = runs.Run(next((workspace / 'runs').iterdir()))
    assert run.status == 'failed' and not run.model_file.exists() and not run.checkpoint_file.exists()
    one_line(comp_cli('predict', run.name, cwd=workspace), 'failed')
    assert not (workspace / 'submissions').exists()


@slow
def test_ctrl_c_says_interrupted_and_how_to_resume(workspace):
    exe = Path(sys.executable).parent / 'comp'
    p = subprocess.Popen([str(exe), *TRAIN[:-4], '--epochs', '20', '--workers', '0'], cwd=workspace,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(workspace.glob('runs/*/metrics.csv')): time.sleep(0.2)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    run = next((workspace / 'runs').iterdir())
    assert p.returncode == 130 and err.strip() == f'interrupted: resume with `comp train --resume {run.name}`', err[-2000:]
    assert runs.Run(run).status == 'incomplete'
