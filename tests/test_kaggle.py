"""comp's Kaggle commands with the real `kaggle` client against a local server that speaks Kaggle's API."""
import json
import os
import shutil
import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from comp.errors import CompError
from comp.sample import write_sample
from conftest import comp_cli, one_line
from kaggle_server import FakeKaggle, client_env

NAME = 'paddy-disease-classification'


@pytest.fixture(scope='module')
def served(tmp_path_factory):
    src = write_sample(tmp_path_factory.mktemp('kg') / 'src', scale=0.01, seed=5)
    return src


@pytest.fixture
def kg(served, tmp_path):
    fake = FakeKaggle().start()
    fake.add_competition(NAME, served)
    home = tmp_path / 'home'
    home.mkdir()
    ws = tmp_path / 'ws'
    ws.mkdir()
    env = {**client_env(fake, home), 'COMP_KAGGLE_POLL': '0.1'}
    yield fake, ws, env
    fake.stop()


def run(kg, *args):
    fake, ws, env = kg
    return comp_cli(*args, cwd=ws, env=env)


def assert_one_line_error(r, *words):
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr
    for w in words: assert w in r.stderr, r.stderr


def test_setup_downloads_validates_records_and_downloads_once(kg, served):
    fake, ws, env = kg
    r = run(kg, 'setup', NAME)
    assert r.returncode == 0, r.stderr
    data = ws / NAME
    assert (data / 'train.csv').is_file() and not (data / 'solution.csv').exists()
    assert json.loads((ws / 'comp.json').read_text())['competition'] == NAME
    assert sorted(p.name for p in (data / 'test_images').iterdir()) == sorted(p.name for p in (served / 'test_images').iterdir())
    assert run(kg, 'setup', NAME).returncode == 0
    assert fake.count('DownloadDataFiles') == 1
    assert not list(ws.glob('*.zip')) and not list(ws.glob('.*'))


def test_whole_loop_setup_train_predict_submit_score(kg, served):
    fake, ws, env = kg
    assert run(kg, 'setup', NAME).returncode == 0
    r = run(kg, 'train', '--arch', 'test_convnext', '--epochs', '1', '--workers', '0')
    assert r.returncode == 0, r.stderr[-2000:]
    run_name = r.stdout.split('run: ')[1].split()[0].rsplit('/', 1)[-1]
    r = run(kg, 'predict', run_name)
    assert r.returncode == 0, r.stderr[-2000:]
    sub = ws / r.stdout.split('submission: ')[1].strip()
    r = run(kg, 'submit', sub, '-m', 'tiny convnext')
    assert r.returncode == 0, r.stderr[-2000:]
    sol = pd.read_csv(served / 'solution.csv', dtype=str)
    mine = pd.read_csv(sub, dtype=str)
    expected = (sol.merge(mine, on='image_id')['label_x'] == sol.merge(mine, on='image_id')['label_y']).mean()
    side = json.loads(sub.with_suffix('.json').read_text())
    rec = side['kaggle'][-1]
    assert rec['status'] == 'COMPLETE' and float(rec['public_score']) == pytest.approx(expected, abs=1e-5)
    assert f'public score {rec["public_score"]}' in r.stdout
    assert fake.submissions[-1]['description'] == 'tiny convnext'
    assert fake.submissions[-1]['data'] == sub.read_bytes()
    r = run(kg, 'submissions')
    assert r.returncode == 0 and 'tiny convnext' in r.stdout and run_name in r.stdout and rec['public_score'] in r.stdout


def test_invalid_file_is_never_uploaded_and_dry_run_only_validates(kg, served):
    fake, ws, env = kg
    run(kg, 'setup', NAME)
    sol = pd.read_csv(served / 'solution.csv', dtype=str)
    bad = ws / 'bad.csv'
    sol.iloc[2:].to_csv(bad, index=False)
    assert_one_line_error(run(kg, 'submit', bad, '-m', 'x'), 'missing')
    good = ws / 'good.csv'
    sol.to_csv(good, index=False)
    r = run(kg, 'submit', good, '-m', 'x', '--dry-run')
    assert r.returncode == 0 and 'not submitted' in r.stdout
    assert fake.count('StartSubmissionUpload') == 0 and fake.count('CreateSubmission') == 0


@pytest.fixture
def ready(kg, served):
    fake, ws, env = kg
    run(kg, 'setup', NAME)
    good = ws / 'good.csv'
    pd.read_csv(served / 'solution.csv', dtype=str).to_csv(good, index=False)
    return good


@pytest.mark.parametrize('status, words', [
    (403, ['(403)', 'rules']), (404, ['(404)', 'competition']), (429, ['(429)', 'midnight UTC']),
])
def test_http_errors_each_give_one_clear_line(kg, ready, status, words):
    fake, ws, env = kg
    fake.fail('CreateSubmission', status)
    assert_one_line_error(run(kg, 'submit', ready, '-m', 'x'), *words)
    assert not fake.submissions
    side = ready.with_suffix('.json')
    assert not side.exists() or 'kaggle' not in json.loads(side.read_text())


def test_wrong_and_missing_credentials(kg, ready):
    fake, ws, env = kg
    r = comp_cli('submit', ready, '-m', 'x', cwd=ws, env={**env, 'KAGGLE_KEY': 'wrong'})
    assert_one_line_error(r, '(401)', 'KAGGLE_USERNAME')
    r = comp_cli('submit', ready, '-m', 'x', cwd=ws, env={**env, 'KAGGLE_USERNAME': '', 'KAGGLE_KEY': '', 'KAGGLE_API_TOKEN': ''})
    assert_one_line_error(r, 'no Kaggle credentials', 'kaggle.json')


NO_KEY = {'KAGGLE_USERNAME': '', 'KAGGLE_KEY': ''}


def test_an_access_token_alone_authenticates_and_a_wrong_one_says_so(kg, ready):
    fake, ws, env = kg
    token = next(iter(fake.tokens))
    r = comp_cli('submit', ready, '-m', 'by token', cwd=ws, env={**env, **NO_KEY, 'KAGGLE_API_TOKEN': token})
    assert r.returncode == 0, r.stderr[-2000:]
    assert ('CreateSubmission', 'alice') in fake.calls and fake.submissions[-1]['description'] == 'by token'
    assert token not in r.stdout + r.stderr + ready.with_suffix('.json').read_text()
    r = comp_cli('submit', ready, '-m', 'x', cwd=ws, env={**env, **NO_KEY, 'KAGGLE_API_TOKEN': 'KGAT_expired'})
    assert_one_line_error(r, 'did not accept', 'KAGGLE_API_TOKEN')
    assert len(fake.submissions) == 1


KAGGLE_SECRETS = """import json, os
class UserSecretsClient:  # Kaggle's notebook-only module, as it answers: the secret, or an error when unset
    def get_secret(self, label):
        secrets = json.loads(os.environ['TEST_NOTEBOOK_SECRETS'])
        if label not in secrets: raise Exception(f'no secret named {label}')
        return secrets[label]
"""


def test_in_a_kaggle_notebook_setup_uses_the_attached_data_and_submit_the_secrets(kg, served, tmp_path):
    fake, _, env = kg
    # A notebook's layout: the competition attached under ../input, the notebook running in ../working.
    kaggle_dir = tmp_path / 'kaggle'
    attached = kaggle_dir / 'input' / NAME
    attached.parent.mkdir(parents=True)
    (kaggle_dir / 'working').mkdir()
    shutil.copytree(served, attached, ignore=shutil.ignore_patterns('solution.csv'))
    mods = tmp_path / 'mods'
    mods.mkdir()
    (mods / 'kaggle_secrets.py').write_text(KAGGLE_SECRETS)
    nb = {**env, **NO_KEY, 'KAGGLE_KERNEL_RUN_TYPE': 'Interactive', 'PYTHONPATH': str(mods),
          'TEST_NOTEBOOK_SECRETS': json.dumps({'kaggle_username': 'alice', 'kaggle_key': fake.users['alice']})}
    ws = kaggle_dir / 'working'
    r = comp_cli('setup', NAME, cwd=ws, env=nb)
    assert r.returncode == 0, r.stderr[-2000:]
    assert str(attached) in r.stdout and fake.count('DownloadDataFiles') == 0  # nothing downloaded (the metric asked)
    assert json.loads((ws / 'comp.json').read_text())['data'] == str(attached)
    assert not (ws / NAME).exists()
    good = ws / 'good.csv'
    pd.read_csv(served / 'solution.csv', dtype=str).to_csv(good, index=False)
    r = comp_cli('submit', good, '-m', 'from a notebook', cwd=ws, env=nb)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ('CreateSubmission', 'alice') in fake.calls
    # Outside a notebook the same folder layout is not looked at: setup downloads.
    r = comp_cli('setup', NAME, cwd=ws, env=env)
    assert r.returncode == 0 and fake.count('DownloadDataFiles') == 1 and (ws / NAME / 'train.csv').is_file()


def test_transient_failures_are_retried(kg, ready):
    fake, ws, env = kg
    fake.fail('CreateSubmission', 503, times=2)
    fake.fail('Upload', 500, times=1)
    r = run(kg, 'submit', ready, '-m', 'retried')
    assert r.returncode == 0, r.stderr
    assert len(fake.submissions) == 1 and fake.count('CreateSubmission') == 3


def test_persistent_server_error_records_nothing(kg, ready):
    fake, ws, env = kg
    fake.fail('CreateSubmission', 500, times=99)
    assert_one_line_error(run(kg, 'submit', ready, '-m', 'x'), 'HTTP 500', 'try again later')
    side = ready.with_suffix('.json')
    assert not side.exists() or 'kaggle' not in json.loads(side.read_text())


def test_network_down_is_one_line(kg, ready):
    fake, ws, env = kg
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there
    r = comp_cli('submit', ready, '-m', 'x', cwd=ws, env={**env, 'HTTP_PROXY': f'http://127.0.0.1:{port}',
                                                          'http_proxy': f'http://127.0.0.1:{port}'})
    assert_one_line_error(r, 'could not reach Kaggle')


def test_unknown_competition_on_setup(kg):
    assert_one_line_error(run(kg, 'setup', 'no-such-competition'), '(404)')


def test_credentials_never_written_or_printed(kg, ready):
    fake, ws, env = kg
    key = fake.users['alice']
    outs = [run(kg, 'submit', ready, '-m', 'x'), run(kg, 'submissions')]
    fake.fail('CreateSubmission', 401)
    outs.append(run(kg, 'submit', ready, '-m', 'y'))
    for r in outs: assert key not in r.stdout + r.stderr
    for f in ws.rglob('*'):
        if f.is_file() and f.suffix in ('.json', '.csv', '.txt'): assert key not in f.read_text(errors='ignore'), f


def test_push_notebook_pushes_library_dataset_then_kernel(kg, wheelhouse, tmp_path):
    fake, ws, env = kg
    env.update(COMP_WHEELHOUSE=str(wheelhouse), COMP_STATE_DIR=str(tmp_path / 'cache'))
    run(kg, 'setup', NAME)
    nb = os.path.join(os.path.dirname(__file__), '..', 'nbs', '01-first-steps.ipynb')
    r = run(kg, 'push-notebook', nb, '--gpu', '--private', '--internet')
    assert r.returncode == 0, r.stderr[-2000:]
    assert list(fake.datasets) == ['alice/comp-lib']
    files = fake.dataset_files('alice/comp-lib')
    (wheel,) = [n for n in files if n.startswith('comp-')]
    assert wheel.endswith('.whl') and len(files[wheel]) > 1000  # the wheel's bytes arrived
    assert 'fastkaggle-' in ' '.join(files) and not any(n.startswith(('torch-', 'fastai-', 'numpy-')) for n in files)
    k = fake.kernels[-1]
    assert k['competitionDataSources'] == [NAME] and k['datasetDataSources'] == ['alice/comp-lib']
    assert k['enableGpu'] is True and k['enableInternet'] is True and k['isPrivate'] is True
    assert 'parameters' in json.loads(k['text'])['cells'][0]['metadata']['tags']
    r = run(kg, 'push-notebook', nb, '--no-gpu', '--internet')
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(fake.datasets['alice/comp-lib']) == 2 and fake.kernels[-1].get('enableGpu', False) is False
    # pushed from a workspace of another competition, the notebook works on that one: its parameter is set
    assert run(kg, 'sample', 'cactus', '--like', 'aerial-cactus-identification').returncode == 0
    r = run(kg, 'push-notebook', nb, '--no-gpu', '--internet')
    assert r.returncode == 0, r.stderr[-2000:]
    k = fake.kernels[-1]
    params = ''.join(json.loads(k['text'])['cells'][0]['source'])
    assert "metric = 'auc'" in params   # offline, the notebook cannot ask the API
    assert "competition = 'aerial-cactus-identification'" in params and k['competitionDataSources'] == ['aerial-cactus-identification']
    assert "competition = 'paddy-disease-classification'" in ''.join(json.load(open(nb))['cells'][0]['source'])  # the file is as it was


def test_push_notebook_offline_without_weights_or_notebook_is_one_line(kg, tmp_path):
    fake, ws, env = kg
    env.update(COMP_STATE_DIR=str(tmp_path / 'cache'), HF_HUB_OFFLINE='1', HF_HUB_CACHE=str(tmp_path / 'empty-hub'))
    run(kg, 'setup', NAME)
    nb = os.path.join(os.path.dirname(__file__), '..', 'nbs', '03-scaling-up.ipynb')
    assert_one_line_error(run(kg, 'push-notebook', nb, '--no-internet'), 'convnext_large', 'swinv2_large',
                          'comp push-weights', '--internet')
    assert_one_line_error(run(kg, 'push-notebook', 'nbs/nope.ipynb'), 'no such notebook')
    assert not fake.kernels and not fake.datasets
    # not cached, and no network to download them: nothing is pushed
    assert_one_line_error(run(kg, 'push-weights', 'convnext_large'), 'convnext_large.fb_in22k', 'HF_HUB_CACHE')
    assert not fake.datasets


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


# kaggle 1.6.x's package __init__, as it was: importing any part of the client authenticates, and raises without
# credentials (2.x catches that itself)
KAGGLE_16 = '''raise OSError("Could not find kaggle.json. Make sure it's located in /root/.kaggle. Or use the environment method.")'''


def test_a_client_that_fails_as_it_is_imported_is_one_line(tmp_path, workspace):
    old = tmp_path / 'old-client'
    (old / 'kaggle' / 'api').mkdir(parents=True)
    (old / 'kaggle' / '__init__.py').write_text(KAGGLE_16)
    (old / 'kaggle' / 'api' / '__init__.py').write_text('')
    (old / 'kaggle' / 'api' / 'kaggle_api_extended.py').write_text('class KaggleApi: pass')
    home = tmp_path / 'home'
    home.mkdir()
    env = {'HOME': str(home), 'KAGGLE_CONFIG_DIR': str(home / '.kaggle'), 'KAGGLE_USERNAME': '', 'KAGGLE_KEY': '',
           'KAGGLE_API_TOKEN': '', 'PYTHONPATH': os.pathsep.join([str(old), os.environ.get('PYTHONPATH', '')])}
    # nothing to authenticate with: said before the client is imported
    one_line(comp_cli('submissions', cwd=workspace, env=env), 'no Kaggle credentials found', 'kaggle.json')
    # something (here a username without a key): the client's own complaint, in comp's one line
    one_line(comp_cli('submissions', cwd=workspace, env={**env, 'KAGGLE_USERNAME': 'alice'}),
             'no usable credentials', 'Could not find kaggle.json', 'KAGGLE_KEY')


def test_push_weights_with_the_hub_unreachable_is_one_line_before_any_retry(kg, tmp_path):
    fake, ws, env = kg
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: the hub is unreachable here, network or not
    hub = f'127.0.0.1:{port}'
    env.update(COMP_STATE_DIR=str(tmp_path / 'cache'), HF_HUB_CACHE=str(tmp_path / 'empty-hub'), HF_HUB_OFFLINE='',
               HF_ENDPOINT=f'http://{hub}', NO_PROXY=hub, no_proxy=hub)   # the fake Kaggle is no proxy to the hub
    r = run(kg, 'push-weights', 'test_convnext')
    assert_one_line_error(r, 'test_convnext.r160_in1k', 'no network to reach 127.0.0.1', 'HF_HUB_CACHE')
    assert 'Retry' not in r.stdout + r.stderr and not fake.datasets


# --- any competition: its metric from the API, archives inside the download, the fake's scoring by metric ---------
def image_bytes(i, fmt='JPEG'):
    """A tiny distinct image's bytes."""
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.new('RGB', (8, 8), (40 * i % 256, 90, 160)).save(buf, fmt)
    return buf.getvalue()


def archived_competition(root):
    """A download holding archives of the three kinds: train.zip with a top folder train/ (and macOS's __MACOSX),
    test.zip with bare PNGs (-> test/), labels.csv.7z holding labels.csv alone (-> labels.csv); plus the CSVs."""
    import py7zr
    import zipfile
    root.mkdir(parents=True)
    labels = pd.DataFrame({'id': [f'{k}{i}' for i, k in enumerate(['cat', 'dog'] * 2)], 'label': ['cat', 'dog'] * 2})
    with zipfile.ZipFile(root / 'train.zip', 'w') as z:
        for i, n in enumerate(labels['id']): z.writestr(f'train/{n}.jpg', image_bytes(i))
        z.writestr('__MACOSX/train/._cat0.jpg', b'resource fork')
    with zipfile.ZipFile(root / 'test.zip', 'w') as z:
        for i in range(1, 4): z.writestr(f'{i}.png', image_bytes(i, 'PNG'))
    with py7zr.SevenZipFile(root / 'labels.csv.7z', 'w') as z: z.writestr(labels.to_csv(index=False), 'labels.csv')
    ids = ['1', '2', '3']
    pd.DataFrame({'id': ids, 'label': 0.5}).to_csv(root / 'sample_submission.csv', index=False)
    pd.DataFrame({'id': ids, 'label': [1, 0, 1]}).to_csv(root / 'solution.csv', index=False)
    return root


@pytest.fixture
def client(tmp_path, monkeypatch):
    """The fake Kaggle, with this process's environment pointed at it: for calling comp.kaggle directly."""
    fake = FakeKaggle().start()
    fake.pending_polls = 0
    home = tmp_path / 'home'
    home.mkdir()
    for k, v in client_env(fake, home).items(): monkeypatch.setenv(k, v)
    for k in ('KAGGLE_API_TOKEN', 'KAGGLE_KERNEL_RUN_TYPE'): monkeypatch.delenv(k, raising=False)
    yield fake
    fake.stop()


@pytest.fixture
def described(monkeypatch):
    """competition.describe replaced by a stub that keeps its arguments and returns the folder as a Competition: what
    setup hands it, tested apart from what it infers."""
    from comp import competition
    calls = []

    def describe(path, **kw):
        calls.append({'path': Path(path), **kw})
        return competition.Competition(Path(path).resolve(), kw['name'])
    monkeypatch.setattr(competition, 'describe', describe, raising=False)
    return calls


def hidden(folder): return [p.name for p in Path(folder).iterdir() if p.name.startswith('.')]


def test_metric_text_is_the_apis_text_and_none_without_one(client, served):
    from comp import kaggle
    from comp.errors import KaggleError
    client.add_competition(NAME, served)
    client.add_competition('no-metric-here', served, metric=None)
    client.add_competition(f'{NAME}-2', served, metric='Mean F1-Score')   # found by the same search: not this one
    assert kaggle.metric_text(NAME) == 'Categorization Accuracy'
    assert kaggle.metric_text(f'{NAME}-2') == 'Mean F1-Score'
    assert kaggle.metric_text('no-metric-here') is None
    assert kaggle.metric_text('no-such-competition') is None
    assert client.count('ListCompetitions') == 4
    client.fail('ListCompetitions', 503, times=99)
    with pytest.raises(KaggleError, match='look up the metric of no-metric-here.*HTTP 503'):
        kaggle.metric_text('no-metric-here')


def test_setup_unpacks_zip_and_7z_archives_once_and_hands_describe_the_metric(client, described, tmp_path, monkeypatch):
    from comp import kaggle
    name = 'cats-and-dogs'
    src = archived_competition(tmp_path / 'src')
    client.add_competition(name, src, metric='Log Loss')
    extracted = []
    extract = kaggle._extract
    monkeypatch.setattr(kaggle, '_extract', lambda a, to: (extracted.append(a.name), extract(a, to)))
    ws = tmp_path / 'ws'
    ws.mkdir()
    comp = kaggle.setup(name, workdir=ws, metric='auc', task='single')
    data = ws / name
    assert described == [{'path': data, 'name': name, 'metric': 'auc', 'kaggle_metric': 'Log Loss', 'task': 'single'}]
    assert comp.path == data.resolve() and json.loads((ws / 'comp.json').read_text())['data'] == str(data.resolve())
    assert sorted(extracted) == ['labels.csv.7z', 'test.zip', 'train.zip']
    assert sorted(p.name for p in (data / 'train').iterdir()) == ['cat0.jpg', 'cat2.jpg', 'dog1.jpg', 'dog3.jpg']
    assert (data / 'train' / 'dog3.jpg').read_bytes() == image_bytes(3)
    assert sorted(p.name for p in (data / 'test').iterdir()) == ['1.png', '2.png', '3.png']
    assert pd.read_csv(data / 'labels.csv')['label'].tolist() == ['cat', 'dog', 'cat', 'dog']
    assert {'train.zip', 'test.zip', 'labels.csv.7z'} <= {p.name for p in data.iterdir()}   # the archives stay
    assert not (data / '__MACOSX').exists() and not (data / 'solution.csv').exists()
    assert not hidden(data) and not hidden(ws)
    # Again, with the metric lookup failing: nothing downloaded or unpacked anew, and setup goes on without it.
    client.fail('ListCompetitions', 500, times=99)
    stamp = (data / 'train' / 'cat0.jpg').stat().st_mtime_ns
    kaggle.setup(name, workdir=ws)
    assert client.count('DownloadDataFiles') == 1 and len(extracted) == 3
    assert (data / 'train' / 'cat0.jpg').stat().st_mtime_ns == stamp
    assert described[-1]['kaggle_metric'] is None and described[-1]['metric'] is None


def test_an_attached_competition_with_archives_is_unpacked_beside_the_notebook(client, described, tmp_path, monkeypatch):
    from comp import kaggle
    name = 'cats-and-dogs'
    attached = archived_competition(tmp_path / 'kaggle' / 'input' / name)
    (attached / 'solution.csv').unlink()
    before = sorted(p.name for p in attached.iterdir())
    ws = tmp_path / 'kaggle' / 'working'
    ws.mkdir()
    monkeypatch.setenv('KAGGLE_KERNEL_RUN_TYPE', 'Interactive')
    kaggle.setup(name, workdir=ws)
    mine = ws / name
    assert described[-1]['path'] == mine and client.count('DownloadDataFiles') == 0
    assert sorted(p.name for p in attached.iterdir()) == before   # the read-only input is left as it is
    for f in before: assert (mine / f).is_symlink() and (mine / f).resolve() == (attached / f).resolve()
    assert len(list((mine / 'train').iterdir())) == 4 and (mine / 'labels.csv').is_file() and (mine / 'test').is_dir()
    kaggle.setup(name, workdir=ws)   # once: the folder beside the notebook is reused
    assert described[-1]['path'] == mine and not hidden(ws)


def damaged_zip(path):
    """A zip whose second member's bytes are damaged (a CRC error once the first member is already extracted)."""
    import zipfile
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        z.writestr('train/a.png', image_bytes(1, 'PNG'))
        z.writestr('train/b.bin', b'B' * 300)
    path.write_bytes(path.read_bytes().replace(b'B' * 300, b'C' * 300))


def test_a_damaged_archive_is_one_line_naming_it_and_leaves_no_half_extracted_folder(kg, tmp_path):
    fake, ws, env = kg
    src = tmp_path / 'src'
    src.mkdir()
    damaged_zip(src / 'train.zip')
    pd.DataFrame({'id': ['1'], 'label': [0.5]}).to_csv(src / 'sample_submission.csv', index=False)
    pd.DataFrame({'id': ['1'], 'label': [1]}).to_csv(src / 'solution.csv', index=False)
    fake.add_competition('damaged', src, metric='Log Loss')
    for _ in range(2):   # downloaded once; the archive is damaged every time
        assert_one_line_error(run(kg, 'setup', 'damaged'), 'train.zip', 'damaged', 'comp setup')
        assert (ws / 'damaged' / 'train.zip').is_file() and not (ws / 'damaged' / 'train').exists()
        assert not hidden(ws / 'damaged') and not hidden(ws)
    assert fake.count('DownloadDataFiles') == 1


def test_a_truncated_7z_is_one_error_naming_it(tmp_path):
    import py7zr
    from comp import kaggle
    from comp.errors import DataError
    folder = tmp_path / 'comp'
    folder.mkdir()
    with py7zr.SevenZipFile(folder / 'train.7z', 'w') as z:
        for i in range(3): z.writestr(image_bytes(i), f'train/{i}.jpg')
    data = (folder / 'train.7z').read_bytes()
    (folder / 'train.7z').write_bytes(data[:len(data) // 2])
    with pytest.raises(DataError, match=r'cannot unpack .*train\.7z: it is damaged'):
        kaggle.unpack(folder)
    assert sorted(p.name for p in folder.iterdir()) == ['train.7z']


def scoring_cases():
    """(Kaggle's metric text, solution, submission, sklearn's score): each format in its own columns, truth in the
    submission's format (one-hot for probabilities)."""
    import numpy as np
    from sklearn.metrics import cohen_kappa_score, f1_score, log_loss, roc_auc_score
    rng = np.random.default_rng(0)
    n, ids = 12, [f'img{i}' for i in range(12)]
    y = np.array([0, 1] * 6)
    p = np.clip(y * 0.6 + rng.uniform(0, 0.4, n), 0.01, 0.99)
    k = rng.integers(0, 3, n)
    onehot = np.eye(3)[k]
    probs = rng.dirichlet(np.ones(3), n)
    grade, guess = rng.integers(0, 5, n), rng.integers(0, 5, n)
    value, reg = rng.uniform(1, 100, n), rng.uniform(1, 100, n)
    truth_sets = [['rust'], ['scab', 'complex'], ['healthy']] * 4
    pred_sets = [['rust'], ['scab'], ['healthy', 'frog']] * 4
    frame = lambda **cols: pd.DataFrame({'id': ids, **cols})
    cls = ['a', 'b', 'c']
    from sklearn.preprocessing import MultiLabelBinarizer
    mlb = MultiLabelBinarizer(classes=['complex', 'healthy', 'rust', 'scab']).fit(truth_sets)
    f1 = f1_score(mlb.transform(truth_sets), mlb.transform([[x for x in s if x in mlb.classes_] for s in pred_sets]),
                  average='micro')
    return [
        ('Log Loss', frame(label=y), frame(label=p), log_loss(y, p)),
        ('Multi Class Log Loss', frame(**dict(zip(cls, onehot.T))), frame(**dict(zip(cls, probs.T))), log_loss(k, probs)),
        ('Area Under Receiver Operating Characteristic Curve', frame(has_cactus=y), frame(has_cactus=p), roc_auc_score(y, p)),
        ('Mean Columnwise Area Under Receiver Operating Characteristic Curve', frame(**dict(zip(cls, onehot.T))),
         frame(**dict(zip(cls, probs.T))), np.mean([roc_auc_score(onehot[:, j], probs[:, j]) for j in range(3)])),
        ('Mean F1-Score', frame(labels=[' '.join(s) for s in truth_sets]), frame(labels=[' '.join(s) for s in pred_sets]), f1),
        ('Quadratic Weighted Kappa', frame(diagnosis=grade), frame(diagnosis=guess),
         cohen_kappa_score(grade, guess, weights='quadratic')),
        ('Root Mean Squared Error', frame(Pawpularity=value), frame(Pawpularity=reg), np.sqrt(np.mean((value - reg) ** 2))),
        ('Categorization Accuracy', frame(label=k), frame(label=np.where(np.arange(n) < 9, k, (k + 1) % 3)), 0.75),
    ]


@pytest.mark.parametrize('case', scoring_cases(), ids=lambda c: c[0])
def test_the_fake_kaggle_scores_each_metric_as_sklearn_does(client, tmp_path, case):
    from comp import kaggle
    text, solution, sub, expected = case
    src = tmp_path / 'src'
    src.mkdir()
    solution.to_csv(src / 'solution.csv', index=False)
    solution.iloc[:0].to_csv(src / 'sample_submission.csv', index=False)
    client.add_competition('scored', src, metric=text)
    f = tmp_path / 'submission.csv'
    sub.sample(frac=1, random_state=1).to_csv(f, index=False)   # rows in another order: matched by id
    a = kaggle.api()
    res = kaggle.call('submit', kaggle._submit_once, a, str(f), 'x', 'scored')
    (rec,) = [s for s in kaggle.list_submissions(a, 'scored') if s['ref'] == res.ref]
    assert rec['status'] == 'COMPLETE' and float(rec['public_score']) == pytest.approx(expected, abs=1e-5)
    f.write_text(sub.iloc[1:].to_csv(index=False))   # a row short: an error, except accuracy (counted wrong)
    res = kaggle.call('submit', kaggle._submit_once, a, str(f), 'y', 'scored')
    (rec,) = [s for s in kaggle.list_submissions(a, 'scored') if s['ref'] == res.ref]
    assert rec['status'] == ('COMPLETE' if 'Accuracy' in text else 'ERROR')


def dogs_vs_cats(root):
    """Kaggle's dogs-vs-cats-redux download: train.zip (train/cat.N.jpg, dog.N.jpg), test.zip (test/N.jpg), the
    sample submission (P(dog)); plus the hidden solution."""
    import zipfile
    root.mkdir(parents=True)
    with zipfile.ZipFile(root / 'train.zip', 'w') as z:
        for i in range(8): z.writestr(f'train/{"cat" if i % 2 else "dog"}.{i}.jpg', image_bytes(i))
    with zipfile.ZipFile(root / 'test.zip', 'w') as z:
        for i in range(1, 5): z.writestr(f'test/{i}.jpg', image_bytes(i + 10))
    pd.DataFrame({'id': range(1, 5), 'label': 0.5}).to_csv(root / 'sample_submission.csv', index=False)
    pd.DataFrame({'id': range(1, 5), 'label': [1, 0, 1, 0]}).to_csv(root / 'solution.csv', index=False)
    return root


def test_comp_setup_of_dogs_vs_cats_records_the_apis_metric_and_metric_overrides_it(kg, tmp_path):
    fake, ws, env = kg
    name = 'dogs-vs-cats-redux-kernels-edition'
    fake.add_competition(name, dogs_vs_cats(tmp_path / 'src'), metric='Log Loss')
    r = run(kg, 'setup', name)
    assert r.returncode == 0, r.stderr[-2000:]
    assert 'log_loss' in r.stdout and len(r.stdout.splitlines()) > 1   # the summary of what was inferred
    assert json.loads((ws / 'comp.json').read_text())['layout']['metric'] == 'log_loss'
    assert (ws / name / 'train' / 'cat.1.jpg').is_file() and (ws / name / 'test' / '4.jpg').is_file()
    r = run(kg, 'setup', name, '--metric', 'auc')
    assert r.returncode == 0, r.stderr[-2000:]
    assert json.loads((ws / 'comp.json').read_text())['layout']['metric'] == 'auc'
    assert fake.count('DownloadDataFiles') == 1
