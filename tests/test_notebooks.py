"""The notebooks in nbs/: each executed top to bottom in a real Jupyter kernel with smoke=True, and one run the way
Kaggle runs it after `comp push-notebook`: offline, comp installed from the attached library dataset."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from comp import competition, kernel, notebook, push, runs, submission, wheels, zoo
from conftest import comp_cli, execute, fresh_env, kaggle_world, kernel_spec, tmpfs
from kaggle_server import FakeKaggle, client_env

NAME = 'paddy-disease-classification'
NBS = sorted((Path(__file__).parent.parent / 'nbs').glob('*.ipynb'))
RUNS = {'01-first-steps': 1, '02-small-models': 3, '03-scaling-up': 2, '04-multi-target': 2, '05-auto': 1,
        '06-inference': 1, '07-ensembles': 3}


def cells(nb): return json.loads(Path(nb).read_text())['cells']


def src(c): return ''.join(c['source'])


def test_the_series_is_there():
    assert [nb.stem for nb in NBS] == list(RUNS)


@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.stem)
def test_committed_without_outputs_parameters_first_install_cell_and_archs_declared(nb):
    cs = cells(nb)
    assert 'parameters' in cs[0]['metadata'].get('tags', []) and src(cs[0]).startswith('smoke = False')
    for c in cs:
        if c['cell_type'] == 'code': assert not c['outputs'] and c['execution_count'] is None, src(c)[:60]
    code = [c for c in cs if c['cell_type'] == 'code']
    install = [i for i, c in enumerate(code) if 'install' in c['metadata'].get('tags', [])]
    assert len(install) == 1 and src(code[install[0]]) == kernel.INSTALL_CELL
    assert all('from comp' not in src(c) for c in code[:install[0]])  # comp is installed before it is imported
    named = {n for c in code for n in re.findall(r"'([a-z0-9_]+)'", src(c)) if n in zoo.RECIPES}
    # push-notebook --no-internet checks the weights dataset against what a notebook declares it trains
    assert set(push.notebook_archs(nb)) == {n for n in named if not n.startswith('test_')}


@pytest.mark.slow
@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.stem)
def test_notebook_runs_in_smoke_mode_in_an_empty_folder(nb, tmp_path, kernels):
    ws = tmp_path / 'ws'
    ws.mkdir()
    execute(nb, tmp_path / 'out.ipynb', ws, kernel_spec(kernels, 'comp-test', sys.executable), smoke=True)
    comp = competition.find(workdir=ws)
    assert comp.path == (ws / 'paddy-sample').resolve()  # it wrote the sample itself
    sub = ws / 'submission.csv'
    assert len(submission.validate(sub, comp)) == len(comp.test_ids())
    assert any(f.read_bytes() == sub.read_bytes() for f in (ws / 'submissions').glob('*.csv'))  # a recorded prediction
    rows = runs.table(ws)
    assert len(rows) == RUNS[nb.stem] and all(r['status'] == 'complete' and r['error'] is not None for r in rows)


# Other kinds of competition passed as a notebook's `competition` parameter: (name, what comp must record for it:
# metric, label kind, submission format, a check of one submitted value given the classes).
OTHERS = {
    # an ordinal grade: recorded with the competition's own metric (qwk), which makes it a grade regressed and cut by
    # thresholds; the files alone would say five classes judged by accuracy
    '01-first-steps': ('aptos2019-blindness-detection', ('qwk', 'ordinal', 'grade'),
                       lambda v, vocab: v.isdigit() and 0 <= int(v) <= 4),   # grades 0 to 4
    # several labels per image, space-separated, each a class of the training labels
    '05-auto': ('plant-pathology-2021-fgvc8', ('f1_micro', 'multi', 'labels'),
                lambda v, vocab: v != '' and set(v.split()) <= set(vocab) and v.split() == sorted(set(v.split()))),
}


@pytest.mark.slow
@pytest.mark.parametrize('nb', [p for p in NBS if p.stem in OTHERS], ids=lambda p: p.stem)
def test_notebook_runs_another_competition_passed_as_a_parameter(nb, tmp_path, kernels):
    import pandas as pd
    name, recorded, valid = OTHERS[nb.stem]
    ws = tmp_path / 'ws'
    ws.mkdir()
    out = execute(nb, tmp_path / 'out.ipynb', ws, kernel_spec(kernels, 'comp-test', sys.executable), smoke=True,
                  competition=name)
    comp = competition.find(workdir=ws)
    assert comp.name == name and comp.path == (ws / f'{name}-sample').resolve()   # the sample in its layout, written here
    assert (comp.layout.metric, comp.task, comp.layout.submission) == recorded
    code = [c for c in out['cells'] if c['cell_type'] == 'code']
    text = lambda c: ''.join(''.join(o.get('text', '')) for o in c['outputs'])
    # what comp inferred, printed after setup
    (shown,) = [text(c) for c in code if 'notebook.setup(smoke, competition' in src(c)]
    assert all(line in shown for line in competition.summary(comp)) and f'metric      {recorded[0]}:' in shown
    # the pictures: images titled with their labels, the labels counted
    for c in code:
        if 'Image.open' in src(c) or '.plot.' in src(c):
            assert any('image/png' in o.get('data', {}) for o in c['outputs']), src(c)[:60]
    sub = pd.read_csv(ws / 'submission.csv', dtype=str, keep_default_na=False)
    sample = comp.sample_df()
    id_col, (col,) = comp.layout.id_col, comp.layout.columns[1:]
    assert list(sub.columns) == list(sample.columns) and sorted(sub[id_col]) == sorted(sample[id_col])
    vocab = comp.vocab()
    assert not [v for v in sub[col] if not valid(v, vocab)]
    rows = runs.table(ws)
    assert rows and all(r['status'] == 'complete' and r['metric'] == recorded[0] for r in rows)


@pytest.mark.slow
def test_notebook_train_skips_a_complete_run_resumes_an_incomplete_one_and_tells_configs_apart(workspace, capsys):
    # What notebook 03 relies on when it is run again after being stopped.
    cfg = notebook.config('test_convnext', smoke=True)
    first = notebook.train(cfg, quiet=True)
    weights = (first / 'model.pth').read_bytes()
    assert notebook.train(notebook.config('test_convnext', smoke=True), quiet=True) == first
    assert (first / 'model.pth').read_bytes() == weights and 'already trained' in capsys.readouterr().out
    # As a killed kernel leaves it: status 'running' under a dead process, no result.
    st = json.loads((first / 'status.json').read_text())
    (first / 'status.json').write_text(json.dumps({**st, 'status': 'running', 'pid': 0}))
    (first / 'result.json').unlink()
    assert first.status == 'incomplete'
    assert notebook.train(cfg, quiet=True) == first
    assert first.status == 'complete' and 'resuming' in capsys.readouterr().out
    other = notebook.train(notebook.config('test_convnext', smoke=True, resize=('pad', (96, 72))), quiet=True)
    assert other != first and len(runs.table()) == 2


def hub_model(hub, repo, body=None):
    """A Hugging Face hub cache entry for `repo`: the tiny model's weights, or a stand-in file."""
    from safetensors.torch import save_file
    folder = hub / f'models--{repo.replace("/", "--")}'
    snap = folder / 'snapshots' / ('b' * 40)
    snap.mkdir(parents=True)
    (folder / 'refs').mkdir()
    (folder / 'refs' / 'main').write_text('b' * 40)
    if body is None: (snap / 'model.safetensors').write_bytes(b'stand-in')
    else: save_file({k: v.contiguous() for k, v in body.state_dict().items()}, snap / 'model.safetensors')
    return snap / 'model.safetensors'


@pytest.mark.slow
def test_pushed_notebook_runs_as_kaggle_runs_it_offline(tmp_path, kernels, wheelhouse):
    import timm
    import torch
    served = __import__('comp.sample', fromlist=['write_sample']).write_sample(tmp_path / 'served', scale=0.01, seed=5)
    fake = FakeKaggle().start()
    try:
        ws, home, hub = tmp_path / 'ws', tmp_path / 'home', tmp_path / 'hub'
        for d in (ws, home, hub): d.mkdir()
        competition.record(competition.load(served), ws)
        torch.manual_seed(3)
        tiny = hub_model(hub, 'timm/test_convnext.r160_in1k', timm.create_model('test_convnext.r160_in1k', num_classes=0))
        # The notebook's own recipe (resnet26d) cannot be downloaded here: a stand-in, never loaded in smoke mode.
        hub_model(hub, timm.get_pretrained_cfg(zoo.recipe('resnet26d').arch).hf_hub_id)
        env = {**client_env(fake, home), 'COMP_STATE_DIR': str(tmp_path / 'cache'), 'COMP_WHEELHOUSE': str(wheelhouse),
               'HF_HUB_CACHE': str(hub), 'HF_HUB_OFFLINE': '1'}
        nb = next(p for p in NBS if p.stem == '01-first-steps')

        r = comp_cli('push-notebook', nb, '--no-internet', cwd=ws, env=env)
        assert r.returncode == 1 and r.stderr.count('\n') == 1, r.stderr
        assert 'resnet26d' in r.stderr and 'comp push-weights resnet26d' in r.stderr and not fake.kernels
        r = comp_cli('push-weights', 'test_convnext', 'resnet26d', cwd=ws, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        r = comp_cli('push-notebook', nb, '--no-internet', cwd=ws, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        k = fake.kernels[-1]
        assert not k.get('enableInternet', False) and k['competitionDataSources'] == [NAME]
        assert sorted(k['datasetDataSources']) == ['alice/comp-lib', 'alice/comp-weights']

        # Kaggle's layout: attached data in ../input, the notebook in working, no network, no comp installed.
        kg = tmp_path / 'kaggle'
        working, pushed, nb_env = kaggle_world(fake, k, served, kg, NAME)
        carried = list(wheels.carried())
        assert 'fastkaggle' in carried and not {'torch', 'fastai', 'timm', 'numpy'} & set(carried)
        python = fresh_env(tmp_path / 'fresh', carried + ['comp'])
        for mod in ('comp', 'fastkaggle'):
            assert subprocess.run([str(python), '-c', f'import {mod}'], env=nb_env, cwd=tmp_path, capture_output=True).returncode != 0, mod
        assert subprocess.run([str(python), '-c', 'import fastai, timm, ipykernel'], env=nb_env, cwd=tmp_path).returncode == 0
        execute(pushed, tmp_path / 'out.ipynb', working, kernel_spec(kernels, 'kaggle-fresh', python), env=nb_env, smoke=True)

        comp = competition.load(kg / 'input' / NAME)
        assert len(submission.validate(working / 'submission.csv', comp)) == len(comp.test_ids())
        (row,) = runs.table(working)
        cfg = runs.find(row['run'], working).config
        assert row['status'] == 'complete' and cfg['pretrained'] is True
        assert Path(cfg['weights']).resolve() == (kg / 'input' / 'comp-weights').resolve()
        assert (kg / 'input' / 'comp-weights' / tiny.relative_to(hub)).read_bytes() == tiny.read_bytes()
        where = subprocess.run([str(python), '-c', 'import comp, fastkaggle; print(comp.__file__, fastkaggle.__file__)'],
                               env=nb_env, cwd=tmp_path, capture_output=True, text=True, check=True).stdout.split()
        assert all(Path(p).resolve().is_relative_to((tmp_path / 'fresh').resolve()) for p in where)  # installed from the wheels
    finally:
        fake.stop()


SUBMIT_CELLS = ["from comp import notebook\nprint('first:', notebook.submit('m'))",
                # something to go on, not enough: the client itself gives up, with exit(1) where a cell hides `exit`
                "import os\nos.environ['KAGGLE_KEY'] = 'a key without a username'\nprint('second:', notebook.submit('m'))"]


def test_submit_in_a_kaggle_kernel_without_credentials_says_why_not(tmp_path, kernels):
    # As Kaggle runs a pushed notebook with no secrets attached: a real kernel, smoke off, no credentials anywhere.
    nb = tmp_path / 'submit.ipynb'
    nb.write_text(json.dumps({'cells': [{'cell_type': 'code', 'metadata': {}, 'execution_count': None, 'outputs': [],
                                         'source': c} for c in SUBMIT_CELLS],
                              'metadata': {}, 'nbformat': 4, 'nbformat_minor': 5}))
    home = tmp_path / 'home'
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith('KAGGLE_')}
    env.update(HOME=str(home), KAGGLE_CONFIG_DIR=str(home / '.kaggle'), XDG_CONFIG_HOME=str(home / '.config'),
               KAGGLE_KERNEL_RUN_TYPE='Batch')
    out = execute(nb, tmp_path / 'out.ipynb', tmp_path, kernel_spec(kernels, 'comp-test', sys.executable), env=env)
    assert all(o['output_type'] == 'stream' for c in out['cells'] for o in c['outputs'])   # no error in any cell
    first, second = ([''.join(o['text']) for o in c['outputs']] for c in out['cells'])
    for (line, returned), label in zip(((''.join(t)).splitlines() for t in (first, second)), ('first', 'second')):
        # the one line, then what submit returned
        assert line.startswith('not submitted (') and 'kaggle.json' in line and "from the notebook's Output" in line
        assert returned == f'{label}: None'
    assert 'no Kaggle credentials found' in first[0] and 'no usable credentials' in second[0]


@pytest.mark.parametrize('layout', ['comp-lib', 'datasets/alice/comp-lib'])
def test_the_install_cell_finds_the_library_where_comp_finds_attached_data(tmp_path, layout):
    # Kaggle mounts a dataset at input/SLUG or input/datasets/OWNER/SLUG: the cell installs from either, as
    # comp's own lookup finds the weights dataset in either.
    working, lib = tmp_path / 'kaggle' / 'working', tmp_path / 'kaggle' / 'input' / layout
    working.mkdir(parents=True)
    lib.mkdir(parents=True)
    wheel = lib / 'comp-0.1-py3-none-any.whl'
    wheel.write_bytes(b'')
    stub = tmp_path / 'stub'   # a pip that records what it was asked to install
    (stub / 'pip').mkdir(parents=True)
    (stub / 'pip' / '__init__.py').write_text('')
    (stub / 'pip' / '__main__.py').write_text("import json, os, sys\n"
                                              "open(os.environ['PIP_CALLS'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')")
    calls = tmp_path / 'calls'
    env = {'PATH': os.environ['PATH'], 'PYTHONPATH': str(stub), 'PIP_CALLS': str(calls)}

    def cell(**more):
        # -S: no site-packages, so comp is not importable, as in a fresh Kaggle kernel
        r = subprocess.run([sys.executable, '-S', '-c', kernel.INSTALL_CELL], cwd=working, env={**env, **more},
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert cell() == '' and not calls.exists()   # not on Kaggle: nothing to do
    assert cell(KAGGLE_KERNEL_RUN_TYPE='Batch') == ''
    (args,) = [json.loads(line) for line in calls.read_text().splitlines()]
    assert args[-3:] == ['--find-links', f'../input/{layout}', f'../input/{layout}/{wheel.name}']
    assert kernel._attached_holding('comp-*.whl', working) == lib.resolve()
    # nothing attached: the cell says so (and what to attach), instead of leaving the next cell's import to fail
    wheel.unlink()
    calls.unlink()
    out = cell(KAGGLE_KERNEL_RUN_TYPE='Batch')
    assert out.startswith('comp is not installed') and 'datasets/*/*/comp-*.whl' in out and 'comp-lib' in out
    assert not calls.exists() and kernel._attached_holding('comp-*.whl', working) is None


@pytest.mark.slow
def test_notebook_train_again_without_a_validation_set_returns_the_run(workspace, capsys):
    # A re-run of a notebook cell whose run has no validation error (valid_pct=0) once failed formatting it.
    cfg = notebook.config('test_convnext', smoke=True, valid_pct=0)
    first = notebook.train(cfg, quiet=True)
    assert first.status == 'complete' and first.result['valid_error'] is None
    weights, _ = (first / 'model.pth').read_bytes(), capsys.readouterr()
    assert notebook.train(notebook.config('test_convnext', smoke=True, valid_pct=0), quiet=True) == first
    assert (first / 'model.pth').read_bytes() == weights and len(runs.all_runs()) == 1   # not trained again
    assert 'already trained, no validation set' in capsys.readouterr().out


def test_a_read_only_folder_for_the_smoke_sample_names_it_not_a_temporary(tmp_path):
    from comp.errors import describe
    with tmpfs(tmp_path / 'ro', 'size=1m,ro') as d:
        with pytest.raises(OSError) as e: notebook.setup(smoke=True, workdir=d)
        said = describe(e.value)
        assert str(d / notebook.SAMPLE_DIR) in said and 'read-only' in said and f'.{notebook.SAMPLE_DIR}.' not in said
        assert f'.{notebook.SAMPLE_DIR}.' not in str(e.value)   # what a notebook's traceback shows


def test_smoke_mode_for_a_competition_comp_has_no_sample_of_is_one_line_naming_those_it_has(tmp_path):
    from comp.errors import ConfigError
    with pytest.raises(ConfigError) as e: notebook.setup(smoke=True, name='titanic', workdir=tmp_path)
    msg = str(e.value)
    assert '\n' not in msg and "'titanic'" in msg and 'smoke = False' in msg and 'aptos2019-blindness-detection' in msg
    assert list(tmp_path.iterdir()) == []
