"""A code competition end to end, against the local Kaggle server: runs trained here, `comp push-runs`, the inference
notebook pushed with `comp push-notebook`, run in a kernel's world rebuilt from exactly what the server received
(../input, no network, comp installed from the library dataset) on a hidden test set three times the local one, and
the notebook version submitted with `comp submit --kernel`."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comp import blending, competition, config, ensemble, predict, runs, submission, train, wheels
from comp.sample import write_sample
from conftest import comp_cli, execute, fresh_env, kaggle_world, kernel_spec, one_line
from kaggle_server import FakeKaggle, client_env

NAME = 'paddy-disease-classification'
NB = Path(__file__).parent.parent / 'nbs' / '06-inference.ipynb'


def hidden_competition(served, dest, scale=3):
    """`served` with another test set, as Kaggle swaps in at scoring: other ids, `scale` times as many images, and a
    sample submission (and a solution, for the server's scoring) to match."""
    other = write_sample(dest.parent / 'other', scale=0.0125 * scale, seed=11)
    n = scale * len(pd.read_csv(served / 'sample_submission.csv'))
    shutil.copytree(served, dest, ignore=shutil.ignore_patterns('test_images', 'sample_submission.csv', 'solution.csv'))
    (dest / 'test_images').mkdir()
    sol = pd.read_csv(other / 'solution.csv', dtype=str).iloc[:n]
    sol['image_id'] = 'hidden-' + sol['image_id']
    for i in sol['image_id']: shutil.copyfile(other / 'test_images' / i.removeprefix('hidden-'), dest / 'test_images' / i)
    sample = pd.read_csv(served / 'sample_submission.csv', dtype=str, keep_default_na=False)
    pd.DataFrame({'image_id': sol['image_id'], 'label': sample['label'].iloc[0]}).to_csv(dest / 'sample_submission.csv', index=False)
    sol.to_csv(dest / 'solution.csv', index=False)
    return dest


@pytest.mark.slow
def test_runs_pushed_predict_a_hidden_test_set_in_a_kernel_and_the_version_is_submitted(tmp_path, kernels, wheelhouse):
    served = write_sample(tmp_path / 'served', scale=0.01, seed=5)
    hidden = hidden_competition(served, tmp_path / 'hidden')
    fake = FakeKaggle().start()
    try:
        fake.add_competition(NAME, hidden, code=True)   # scored on the hidden answers
        ws, home = tmp_path / 'ws', tmp_path / 'home'
        ws.mkdir(), home.mkdir()
        competition.record(competition.load(served), ws)
        env = {**client_env(fake, home), 'COMP_STATE_DIR': str(tmp_path / 'cache'), 'COMP_WHEELHOUSE': str(wheelhouse),
               'COMP_KAGGLE_POLL': '0.05'}
        a = train.train(config.TrainConfig(arch='test_convnext', epochs=1, workers=0), workdir=ws, quiet=True)
        b = train.train(config.TrainConfig(arch='test_convnext', epochs=1, lr=0.03, workers=0), workdir=ws, quiet=True)
        # a stacked ensemble: the kernel repeats its fitted model from the pushed record alone
        rec = ensemble.ensemble([a.name, b.name], method='stack', name='ens', workdir=ws)
        assert rec['method'] == 'stack' and rec['stack']['model'] == 'logistic'
        ensemble.ensemble([a.name, b.name], tta=2, name='ens-tta', workdir=ws)

        r = comp_cli('push-runs', 'nope', cwd=ws, env=env)
        one_line(r, "'nope' is neither a run nor a submission")
        r = comp_cli('push-runs', 'ens', 'ens-tta', cwd=ws, env=env)
        assert r.returncode == 0 and 'pushed alice/comp-runs: 2 runs (2 new' in r.stdout, r.stderr[-2000:]
        r = comp_cli('push-runs', 'ens', cwd=ws, env=env)   # nothing new: no new version
        assert r.returncode == 0 and 'up to date' in r.stdout and len(fake.datasets['alice/comp-runs']) == 1
        r = comp_cli('push-notebook', NB, '--submission', 'ens', cwd=ws, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        k = fake.kernels[-1]
        assert not k.get('enableInternet', False) and k['competitionDataSources'] == [NAME]
        assert sorted(k['datasetDataSources']) == ['alice/comp-lib', 'alice/comp-runs']
        slug = k['slug']

        # The kernel's world, from what the server received: no network, comp not installed, the hidden test set.
        kg = tmp_path / 'kaggle'
        working, pushed, nb_env = kaggle_world(fake, k, hidden, kg, NAME)
        python = fresh_env(tmp_path / 'fresh', list(wheels.carried()) + ['comp'])
        spec = kernel_spec(kernels, 'kaggle-code', python)
        execute(pushed, tmp_path / 'out.ipynb', working, spec, env=nb_env)

        hidden_comp = competition.load(kg / 'input' / NAME)
        sub = submission.validate(working / 'submission.csv', hidden_comp)
        assert list(sub['image_id']) == list(hidden_comp.sample_df()['image_id'])   # exactly the hidden ids
        assert len(sub) == 3 * len(competition.load(served).test_ids())
        # the probabilities local prediction gives on the same images (a copy: predictions are stored in the runs)
        local = Path(shutil.copytree(ws, tmp_path / 'local', ignore=shutil.ignore_patterns('preds_test*.csv')))
        got = pd.read_csv(working / 'predictions.csv').set_index('image_id')
        tests = [predict.predictions(runs.find(r, local), workdir=local, comp=hidden_comp)[0].set_index('image_id').loc[got.index]
                 for r in rec['runs']]
        want = blending.combine(rec, [t[a.vocab].to_numpy() for t in tests])
        np.testing.assert_allclose(got[a.vocab].to_numpy(), want, atol=1e-5)
        assert json.loads((working / 'submission.json').read_text())['method'] == 'stack'

        # The runs as a training notebook's output (kernel_sources), and a limit the TTA ensemble cannot fit in.
        r = comp_cli('push-notebook', NB, '--kernel-source', 'alice/train-it', '--submission', 'ens-tta', cwd=ws, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        k2 = fake.kernels[-1]
        assert k2['kernelDataSources'] == ['alice/train-it'] and k2['datasetDataSources'] == ['alice/comp-lib']
        shutil.rmtree(kg / 'input' / 'comp-runs')
        shutil.copytree(ws, kg / 'input' / 'train-it', ignore=shutil.ignore_patterns('*.csv', 'comp.json'))
        (kg / 'working2').mkdir()
        (tmp_path / 'pushed2.ipynb').write_text(k2['text'])
        out = execute(tmp_path / 'pushed2.ipynb', tmp_path / 'out2.ipynb', kg / 'working2', spec, env=nb_env, time_limit=0.001)
        said = ''.join(''.join(o.get('text', '')) for c in out['cells'] if c['cell_type'] == 'code' for o in c['outputs'])
        record = json.loads((kg / 'working2' / 'submission.json').read_text())
        assert record['tta'] == 0 and record['tta_asked'] == 2 and len(record['runs']) == 1
        assert 'TTA 2 -> 0' in said and 'dropped' in said and record['dropped'][0] in said
        assert len(submission.validate(kg / 'working2' / 'submission.csv', hidden_comp)) == len(sub)

        # comp submit --kernel: Kaggle scores the version on the hidden test set (here: what the kernel wrote)
        fake.kernel_runs[(slug, 1)] = {'status': 'COMPLETE', 'output': (working / 'submission.csv').read_bytes()}
        r = comp_cli('submit', '--kernel', slug, '--version', '1', '-m', 'two tiny models', '--wait', '30', cwd=ws, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
        truth = pd.read_csv(hidden / 'solution.csv', dtype=str).set_index('image_id')['label']
        acc = (sub.set_index('image_id')['label'] == truth.loc[sub['image_id']]).mean()
        assert f'public score {acc:.5f}' in r.stdout and fake.count('CreateCodeSubmission') == 1
        side = json.loads((ws / 'submissions' / 'ens.json').read_text())
        assert side['kaggle'][-1]['kernel'] == slug and side['kaggle'][-1]['version'] == 1
        r = comp_cli('submissions', cwd=ws, env=env)
        assert r.returncode == 0 and ','.join(rec['runs']) in r.stdout, r.stdout + r.stderr

        # bad input: one line each, nothing submitted
        fake.kernel_runs[(slug, 2)] = {'status': 'ERROR', 'output': None, 'error': 'CUDA out of memory'}
        one_line(comp_cli('submit', '--kernel', slug, '--version', '2', '-m', 'x', cwd=ws, env=env), 'version 2', 'failed', 'CUDA out of memory')
        one_line(comp_cli('submit', '--kernel', 'alice/no-such-notebook', '-m', 'x', cwd=ws, env=env), 'alice/no-such-notebook', '404')
        fake.competitions[NAME]['code'] = False
        one_line(comp_cli('submit', '--kernel', slug, '--version', '1', '-m', 'x', cwd=ws, env=env), 'takes CSV submissions')
        one_line(comp_cli('submit', 'submissions/ens.csv', '--kernel', slug, '-m', 'x', cwd=ws, env=env), 'not both')
        assert fake.count('CreateCodeSubmission') == 2   # the refused one reached Kaggle; the others did not
    finally:
        fake.stop()
