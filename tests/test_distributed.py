"""comp.distributed: data-parallel training on two gloo processes on the CPU, as on two GPUs."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from comp import competition, config, distributed, runs, train
from comp.errors import ConfigError
from conftest import comp_cli

slow = pytest.mark.slow
LAUNCHER = {'RANK': '0', 'WORLD_SIZE': '2', 'LOCAL_RANK': '0', 'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': '29511'}


@pytest.fixture(scope='module')
def two_procs(tiny_sample, tmp_path_factory):
    """(workspace, run, the command's output): test_convnext trained for 2 epochs by `comp train --procs 2`, with
    gradient accumulation."""
    ws = tmp_path_factory.mktemp('procs')
    competition.record(competition.load(tiny_sample), ws)
    r = comp_cli('train', '--arch', 'test_convnext', '--epochs', '2', '--workers', '0', '--procs', '2', '--accum', '2',
                 cwd=ws)
    assert r.returncode == 0, r.stderr[-3000:]
    return ws, runs.all_runs(ws)[0], r


@slow
def test_two_processes_train_one_run_that_the_first_one_records(two_procs):
    ws, run, r = two_procs
    assert len(runs.all_runs(ws)) == 1 and run.status == 'complete'
    c = run.config
    assert (c['procs'], c['bs'], c['accum'], c['effective_bs']) == (2, 16, 2, 64)
    assert c['lr'] == 0.01   # the recipe's: not scaled with the effective batch
    assert run.result['procs'] == 2 and run.result['n_valid'] == len(pd.read_csv(run / 'preds_valid.csv'))
    for f in ('model.pth', 'vocab.json', 'loss.png', 'confusion.png', 'env.json'): assert (run / f).exists(), f
    assert not run.checkpoint_file.exists()
    assert list(run.metrics()['epoch']) == [1, 2]
    # one process speaks: each epoch's line once, the run once
    assert r.stdout.count('epoch 1:') == 1 and r.stdout.count('epoch 2:') == 1 and r.stdout.count('run: ') == 1
    assert 'Launching training' not in r.stdout   # accelerate's line, which says CUDAs on a CPU
    assert json.loads((run / 'env.json').read_text())['device'] == 'cpu'


@slow
def test_metrics_equal_a_one_process_evaluation_of_the_saved_weights(two_procs):
    from comp.learner import build_learner
    ws, run, _ = two_procs
    c = run.config
    comp = competition.find(c['data'], ws)
    learn = build_learner(c, comp, run, ws)
    # an odd number of validation images: the second process's share is padded with a repeat of one image,
    # which must not count
    assert len(learn.dls.valid_ds) % 2 == 1
    learn.load(runs.MODEL)
    valid_loss, err = learn.validate()
    last = run.metrics().iloc[-1]
    assert last['error_rate'] == pytest.approx(float(err), abs=1e-6)   # one image of 21 is 0.048
    assert last['valid_loss'] == pytest.approx(float(valid_loss), rel=1e-4)
    assert run.result['valid_error'] == pytest.approx(float(err), abs=1e-6)


@slow
def test_a_run_trained_on_two_processes_predicts_with_tta_on_one(two_procs):
    from comp.predict import predict
    ws, run, _ = two_procs
    rec = predict(run, tta=2, workdir=ws)
    assert Path(rec['submission']).exists() and rec['valid_error_tta'] is not None
    assert rec['valid_error'] == pytest.approx(run.result['valid_error'])


def _indices(out, use_fastai):
    """In each of two processes: the training order's indices this process gets from the DataLoader a trainer wraps
    the learner's in as the fit begins: fastai's DistributedTrainer, or the one comp's to_distributed adds."""
    import torch
    from fastai.data.core import DataLoaders
    from fastai.data.load import DataLoader
    from fastai.distributed import DistributedTrainer
    from fastai.learner import Learner
    with distributed.process_group():
        dl = DataLoader(list(range(11)), bs=4, shuffle=True)
        learn = Learner(DataLoaders(dl, dl), torch.nn.Linear(1, 1), loss_func=torch.nn.MSELoss())
        if use_fastai: learn.add_cb(DistributedTrainer(sync_bn=False, cpu=True))
        else: distributed.to_distributed(learn)
        trainer = next(cb for cb in learn.cbs if isinstance(cb, DistributedTrainer))
        try:
            trainer.before_fit()
            got = list(learn.dls.train.get_idxs())
        except Exception as e: got = type(e).__name__
        Path(out, f'rank{distributed.rank()}.json').write_text(json.dumps(got))


@pytest.mark.skipif(__import__('torch').cuda.is_available(), reason='fastai broadcasts on CUDA, which works here')
def test_the_shim_shares_the_indices_where_fastai_needs_cuda(tmp_path):
    (tmp_path / 'fastai').mkdir()
    (tmp_path / 'comp').mkdir()
    distributed.launch(_indices, 2, (str(tmp_path / 'fastai'), True))
    distributed.launch(_indices, 2, (str(tmp_path / 'comp'), False))
    fastai = [json.loads((tmp_path / 'fastai' / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert all(isinstance(g, str) for g in fastai)   # fastai 2.8's DistributedDL._broadcast: `.cuda()`
    a, b = [json.loads((tmp_path / 'comp' / f'rank{r}.json').read_text()) for r in (0, 1)]
    assert len(a) == len(b) == 6 and sorted(set(a + b)) == list(range(11))   # rank 0's order, one index repeated


def _late_partner():
    """Process 1 never reaches the barrier that process 0 waits at."""
    with distributed.process_group():
        if distributed.rank() == 1: time.sleep(300)
        distributed.barrier()


def test_a_process_waiting_for_a_partner_gives_up_after_the_timeout(monkeypatch):
    monkeypatch.setenv(distributed.TIMEOUT_VAR, '3')
    with pytest.raises(distributed.ProcessesFailed) as e:
        distributed.launch(_late_partner, 2)
    assert 'process 0 failed' in str(e.value) and not e.value.killed   # and the launcher ended process 1
    monkeypatch.setenv(distributed.TIMEOUT_VAR, 'soon')
    with pytest.raises(ConfigError, match='COMP_DIST_TIMEOUT'): distributed.launch(_late_partner, 2)


def _fails():
    if distributed.rank() == 1: raise ValueError('bad value in process 1')


def test_the_launchers_logs_show_only_with_comp_debug(monkeypatch, capfd):
    monkeypatch.delenv('COMP_DEBUG', raising=False)
    with pytest.raises(distributed.ProcessesFailed, match='process 1 failed .*bad value in process 1'):
        distributed.launch(_fails, 2)
    assert 'bad value' not in capfd.readouterr().err   # comp's error says it, once
    monkeypatch.setenv('COMP_DEBUG', '1')
    with pytest.raises(distributed.ProcessesFailed): distributed.launch(_fails, 2)
    assert 'bad value in process 1' in capfd.readouterr().err   # the elastic agent's log of the process's traceback


def test_bad_process_counts_say_how_to_fix(monkeypatch, workspace):
    from comp.machine import cpus
    with pytest.raises(ConfigError, match='more than the 2 GPUs here: use --procs 2'):
        distributed.check_procs(4, gpus=2)
    with pytest.raises(ConfigError, match=f'more than the {cpus()} CPU cores'):
        distributed.check_procs(cpus() + 1, gpus=0)
    with pytest.raises(ConfigError, match='--ema is not supported with --procs 2'):
        train.train(config.TrainConfig(arch='test_convnext', procs=2, ema=0.99), quiet=True)
    with pytest.raises(ConfigError, match='training images each of the 2 processes gets'):
        train.train(config.TrainConfig(arch='test_convnext', procs=2, bs=60), quiet=True)
    for k, v in LAUNCHER.items(): monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match='the launcher started 2 processes: drop --procs'):
        config.resolve(config.TrainConfig(arch='test_convnext', procs=3))
    assert config.resolve(config.TrainConfig(arch='test_convnext'))['procs'] == 2
    assert not (workspace / 'runs').exists()


def test_a_half_set_launcher_environment_is_one_line(workspace):
    r = comp_cli('train', '--arch', 'test_convnext', '--epochs', '1', cwd=workspace, env={'MASTER_ADDR': '127.0.0.1'})
    assert r.returncode == 1 and r.stderr.count('\n') == 1 and 'Traceback' not in r.stderr
    assert 'half set (MASTER_ADDR set, RANK, WORLD_SIZE, LOCAL_RANK, MASTER_PORT not)' in r.stderr
    assert not (workspace / 'runs').exists()


def _procs_of(pid):
    import psutil
    return psutil.Process(pid).children(recursive=True)


@slow
def test_a_killed_process_takes_the_others_down_and_the_run_resumes(workspace):
    import psutil
    exe = os.path.join(os.path.dirname(sys.executable), 'comp')
    p = subprocess.Popen([exe, 'train', '--arch', 'test_convnext', '--epochs', '5', '--size', '32', '--workers', '0',
                          '--procs', '2'],
                         cwd=workspace, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, run = time.time() + 300, None
    while time.time() < deadline and run is None:
        found = list((workspace / 'runs').glob('*/status.json')) if (workspace / 'runs').exists() else []
        if found and json.loads(found[0].read_text()).get('epochs_done', 0) >= 1: run = runs.Run(found[0].parent)
        time.sleep(0.1)
    assert run is not None, 'training never finished an epoch'
    first = run.status_record()['pid']   # rank 0 records the status
    me = psutil.Process(p.pid)
    workers = [c for c in _procs_of(p.pid) if c.cmdline() == me.cmdline()]
    assert first in [w.pid for w in workers] and len(workers) == 2
    other = next(w for w in workers if w.pid != first)
    other.send_signal(signal.SIGKILL)
    out, err = p.communicate(timeout=120)   # no hang: the launcher ends the other process
    assert p.returncode == 1
    # comp's one line only: not the elastic agent's log of the other process's traceback before it
    assert err.count('\n') == 1, err
    line = err.strip()
    # the kill, or what process 0 saw of it first (gloo: connection closed or reset by peer)
    assert line.startswith('error: training stopped: process ')
    assert 'process 1 was killed (SIGKILL)' in line or 'by peer' in line
    assert line.endswith(f'; resume with `comp train --resume {run.name}`')
    gone, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive
    assert run.status == 'incomplete' and not run.model_file.exists() and not run.result_file.exists()
    done = run.epochs_done
    assert 1 <= done < 5
    r = comp_cli('train', '--resume', run.name, cwd=workspace)
    assert r.returncode == 0, r.stderr[-3000:]
    assert run.status == 'complete' and runs.Run(run.path).config['procs'] == 2
    assert list(run.metrics()['epoch']) == list(range(1, 6))
    assert f'epoch {done + 1}:' in r.stdout and f'epoch {done}:' not in r.stdout


@slow
def test_torchrun_runs_it_as_one_rank_each_with_lr_find(workspace):
    torchrun = Path(sys.executable).parent / 'torchrun'
    r = subprocess.run([str(torchrun), '--nproc_per_node', '2', '--master_port', str(distributed.free_port()),
                        '-m', 'comp', 'train', '--arch', 'test_convnext', '--epochs', '1', '--size', '32', '--workers', '0',
                        '--lr', 'auto'], cwd=workspace, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    [run] = runs.all_runs(workspace)
    assert run.status == 'complete' and run.config['procs'] == 2 and r.stdout.count('run: ') == 1
    found = run.lr_find
    assert run.result['lr'] == found['suggestions']['valley'] and run.lr_find_plot.exists()


NOTEBOOK = """
from comp import notebook
cfg = notebook.config('test_convnext', smoke=True)
run = notebook.train(cfg, quiet=True, procs=2)
again = notebook.train(cfg, quiet=True, procs=2)
print(run.name, again.name, run.config['procs'])
"""


@slow
def test_the_notebook_call_trains_on_two_processes_then_finds_the_run(workspace):
    # In a fresh interpreter, as a notebook's kernel: forked from this test process, after the other tests' launches
    # in it, the two processes once waited for each other for ever (not understood yet).
    r = subprocess.run([sys.executable, '-c', NOTEBOOK], cwd=workspace, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    name, again, procs = r.stdout.split()[-3:]
    assert name == again and procs == '2' and len(runs.all_runs(workspace)) == 1
    assert runs.find(name, workspace).status == 'complete'
