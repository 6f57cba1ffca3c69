import io
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from contextlib import contextmanager
from importlib.metadata import distributions
from pathlib import Path

import pytest

from comp import competition
from comp.sample import write_sample


@pytest.fixture(scope='session', autouse=True)
def _cache(tmp_path_factory):
    # What comp remembers between commands goes to a temporary folder, never the user's ~/.cache.
    mp = pytest.MonkeyPatch()
    mp.setenv('COMP_STATE_DIR', str(tmp_path_factory.mktemp('state')))
    yield
    mp.undo()


@pytest.fixture(scope='session')
def tiny_sample(tmp_path_factory):
    """A 1% sample competition (~100 train, ~35 test images): written once, never modified."""
    return write_sample(tmp_path_factory.mktemp('tiny') / 'paddy', scale=0.01, seed=0)


@pytest.fixture(scope='session')
def small_sample(tmp_path_factory):
    """The default 'small' sample (~300 train images)."""
    return write_sample(tmp_path_factory.mktemp('small') / 'paddy', scale='small', seed=42)


@pytest.fixture
def tiny_copy(tiny_sample, tmp_path):
    """A private copy of the tiny sample that a test may break."""
    return Path(shutil.copytree(tiny_sample, tmp_path / 'paddy'))


@pytest.fixture
def workspace(tiny_sample, tmp_path, monkeypatch):
    """A working directory with the tiny sample recorded as its competition."""
    ws = tmp_path / 'ws'
    ws.mkdir()
    competition.record(competition.load(tiny_sample), ws)
    monkeypatch.chdir(ws)
    return ws


@pytest.fixture(scope='session')
def two_runs(tiny_sample, tmp_path_factory):
    """(workspace, run a, run b): two tiny test_convnext runs on the tiny sample's shared split, trained once for
    every module that predicts, ensembles or reads what a run records. Tests may add predictions and submissions."""
    from comp import config, train
    ws = tmp_path_factory.mktemp('two-runs')
    competition.record(competition.load(tiny_sample), ws)
    a = train.train(config.TrainConfig(arch='test_convnext', epochs=2, workers=0), workdir=ws, quiet=True)
    b = train.train(config.TrainConfig(arch='test_convnext', epochs=1, lr=0.03, workers=0), workdir=ws, quiet=True)
    return ws, a, b


@pytest.fixture(scope='session')
def trained(tiny_sample, tmp_path_factory):
    """(workspace, run): one tiny test_convnext run for the predict and resume cases of test_predict and test_train,
    trained once; tests may add files."""
    from comp import config, train
    ws = tmp_path_factory.mktemp('trained-ws')
    competition.record(competition.load(tiny_sample), ws)
    return ws, train.train(config.TrainConfig(arch='test_convnext', epochs=1, workers=0), workdir=ws, quiet=True)


TRAIN = ('train', '--arch', 'test_convnext', '--epochs', '1', '--workers', '0')   # the smallest `comp train`

SWIN = 'swin_tiny_patch4_window7_224'   # timm has no tiny test Swin; untrained, 28M weights, fast at 64 px


def interruptible():
    """For subprocess.Popen(preexec_fn=...): the child takes SIGINT as a terminal's Ctrl-C does, even when this test
    run was started where SIGINT is ignored (a shell's background job without job control), which children inherit."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ended_pid():
    """The pid of a process that has exited: what a killed run leaves in its status.json."""
    import subprocess
    return int(subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'], capture_output=True, text=True).stdout)


def fake_run(ws, tiny_sample, status='incomplete', **extra):
    """A run folder as `runs.create` makes it, without training, in status `status` (from a process that is gone)."""
    import json
    from comp import runs
    from comp.config import TrainConfig, resolve
    c = resolve(TrainConfig(arch='test_convnext', epochs=1, workers=0), competition.load(tiny_sample))
    run = runs.create(ws, c)
    rec = {**run.status_record(), 'status': status, 'pid': ended_pid(), **extra}
    run.status_file.write_text(json.dumps(rec))
    return run


def comp_cli(*args, cwd=None, env=None, timeout=900):
    """Run the installed `comp` command line as a user would."""
    import os
    import subprocess
    exe = Path(sys.executable).parent / 'comp'
    e = {**os.environ, **(env or {})}
    return subprocess.run([str(exe), *map(str, args)], cwd=cwd, env=e, capture_output=True, text=True, timeout=timeout)


def one_line(r, *words):
    """The command failed as a user error should: exit 1, one stderr line, no traceback, the words in it."""
    assert r.returncode == 1, r.stdout[-1000:] + r.stderr[-2000:]
    assert r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    for w in words: assert w in r.stderr, r.stderr


def snapshot(ws):
    """Every file under the workspace with its bytes: what a failed command must leave as it was."""
    return {p.relative_to(ws).as_posix(): p.read_bytes() for p in sorted(Path(ws).rglob('*')) if p.is_file()}


@pytest.fixture(scope='session')
def wheelhouse(tmp_path_factory):
    """The wheels a library dataset carries, fetched once per session (pip download, or pip's cache)."""
    from comp import wheels
    wheels.library_files(tmp_path_factory.mktemp('lib'))
    return wheels.wheel_cache()


@pytest.fixture(scope='session')
def kernels(tmp_path_factory):
    """A Jupyter path for kernel specs the tests write; JUPYTER_PATH points at it for papermill."""
    root = tmp_path_factory.mktemp('jupyter')
    mp = pytest.MonkeyPatch()
    mp.setenv('JUPYTER_PATH', str(root))
    yield root
    mp.undo()


def kernel_spec(kernels, name, python):
    """Register a kernel named `name` that runs `python` (another environment's interpreter, say)."""
    import json
    d = kernels / 'kernels' / name
    d.mkdir(parents=True, exist_ok=True)
    (d / 'kernel.json').write_text(json.dumps({'argv': [str(python), '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
                                               'display_name': name, 'language': 'python'}))
    return name


@contextmanager
def tmpfs(path, options='size=1m', why='needs root'):
    """A small tmpfs mounted at `path` (made here) for the block: a disk that fills, or one mounted read-only; the
    test is skipped where it cannot be mounted (root only; chmod does not stop root)."""
    import subprocess
    path.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs', str(path)], capture_output=True).returncode:
        pytest.skip(f'cannot mount a tmpfs ({options}) here ({why})')
    try: yield path
    finally: subprocess.run(['umount', str(path)])


# Running notebooks as Kaggle runs them: shared by test_notebooks and test_code_competition.
def execute(nb, out, cwd, kernel, env=None, **params):
    """Run `nb` with papermill (parameters injected after its `parameters` cell) in a fresh kernel."""
    cmd = [sys.executable, '-m', 'papermill', str(nb), str(out), '-k', kernel, '--cwd', str(cwd), '--no-progress-bar']
    for k, v in params.items(): cmd += ['-p', k, str(v)]
    r = subprocess.run(cmd, env=env or os.environ.copy(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(Path(out).read_text())


def unpack(files, dest):
    """A dataset as a Kaggle notebook sees it: uploaded files as they are, uploaded folders (archives) unpacked."""
    dest.mkdir(parents=True)
    for name, data in files.items():
        if name.endswith('.zip'):
            with zipfile.ZipFile(io.BytesIO(data)) as z: z.extractall(dest / name[:-4])
        elif name.endswith('.tar'):
            with tarfile.open(fileobj=io.BytesIO(data)) as t: t.extractall(dest / name[:-4], filter='data')
        else: (dest / name).write_bytes(data)


def fresh_env(root, hidden):
    """A venv that sees this environment's packages through symlinks, except the `hidden` distributions."""
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(root)], check=True)
    site = Path(sysconfig.get_paths()['purelib'])
    mine = Path(subprocess.run([str(root / 'bin' / 'python'), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                               capture_output=True, text=True, check=True).stdout.strip())
    skip = {'__pycache__'}
    # Distributions as installed in site-packages (not a source tree on PYTHONPATH), and every top-level file of each.
    dists = {re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d for d in distributions(path=[str(site)])}
    for n in hidden:
        skip |= {Path(f).parts[0] for f in dists[n].files or [] if not str(f).startswith('..')}
    for p in site.iterdir():
        if p.name not in skip: (mine / p.name).symlink_to(p)
    return root / 'bin' / 'python'


def kaggle_world(fake, k, competition_dir, root, name):
    """(working folder, pushed notebook, kernel env) of kernel `k` as Kaggle runs it, from what `fake` received:
    its datasets unpacked in root/input, the competition (no solution) attached as `name`, the notebook in
    root/working, and an environment with no PYTHONPATH, proxies or credentials, and no pip config (with its extra
    package sources)."""
    for slug in k['datasetDataSources']: unpack(fake.dataset_files(slug), root / 'input' / slug.split('/')[1])
    shutil.copytree(competition_dir, root / 'input' / name, ignore=shutil.ignore_patterns('solution.csv'))
    (root / 'working').mkdir()
    pushed = root / 'pushed.ipynb'
    pushed.write_text(k['text'])
    env = {'PATH': os.environ['PATH'], 'HOME': str(root / 'home'), 'JUPYTER_PATH': os.environ.get('JUPYTER_PATH', ''),
           'KAGGLE_KERNEL_RUN_TYPE': 'Batch', 'HF_HUB_OFFLINE': '1', 'HF_HUB_CACHE': str(root / 'empty-hub'),
           'COMP_STATE_DIR': str(root / 'cache'), 'PIP_CONFIG_FILE': os.devnull}
    return root / 'working', pushed, env
