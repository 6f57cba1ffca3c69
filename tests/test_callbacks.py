"""comp's fastai callbacks in real runs (comp.callbacks): RunLog's metrics rows, counted across fine_tune's frozen
epoch, its line per epoch, and its stop on a loss that is not finite; the two-headed loss and metrics of --target
disease+variety; progressive resizing."""
import json

import pandas as pd
import pytest

from comp import runs, train
from comp.config import TrainConfig
from conftest import TRAIN, comp_cli, one_line

slow = pytest.mark.slow


def tc(**kw):
    return TrainConfig(**{'arch': 'test_convnext', 'epochs': 1, 'workers': 0, **kw})


@slow
def test_schedules_fine_tune_adds_a_frozen_epoch(workspace):
    # RunLog numbers fine_tune's frozen epoch 1 and its second fit's epochs on from 2 (callbacks.run_epoch)
    one = train.train(tc(epochs=2, schedule='one_cycle'), quiet=True)
    ft = train.train(tc(epochs=2, schedule='fine_tune'), quiet=True)
    assert list(pd.read_csv(one / 'metrics.csv')['epoch']) == [1, 2]
    assert list(pd.read_csv(ft / 'metrics.csv')['epoch']) == [1, 2, 3]


@slow
def test_epoch_lines_when_not_a_terminal(workspace):
    r = comp_cli('train', '--arch', 'test_convnext', '--epochs', '2', '--workers', '0', cwd=workspace)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l for l in r.stdout.splitlines() if l.startswith('epoch ')]
    assert [l.split(':')[0] for l in lines] == ['epoch 1', 'epoch 2']
    assert '█' not in r.stdout and 'validation error:' in r.stdout


@slow
def test_a_loss_that_is_not_finite_fails_the_run(workspace):
    r = comp_cli(*TRAIN, '--lr', '1e30', cwd=workspace)
    one_line(r, 'training stopped in epoch 1', 'lower --lr')
    run = runs.Run(next((workspace / 'runs').iterdir()))
    assert run.status == 'failed' and not run.model_file.exists() and not run.checkpoint_file.exists()
    one_line(comp_cli('predict', run.name, cwd=workspace), 'failed')
    assert not (workspace / 'submissions').exists()


@slow
def test_multi_target_trains_two_heads_and_predicts_disease(workspace):
    run = train.train(tc(target='disease+variety', epochs=2), quiet=True)
    m = pd.read_csv(run / 'metrics.csv')
    assert {'disease_error', 'variety_error'} <= set(m.columns)
    vocab = json.loads((run / 'vocab.json').read_text())
    assert len(vocab) == 10 and 'blast' in vocab
    valid = pd.read_csv(run / 'preds_valid.csv')
    assert list(valid.columns[2:]) == vocab
    from comp.predict import predict
    sub = pd.read_csv(predict(run)['submission'], dtype=str)
    assert set(sub['label']) <= set(vocab)


def _batches(monkeypatch):
    """What each epoch of the runs trained next in this test trains on: the shape of its first batch, and its
    optimizer steps."""
    from fastai.vision.all import Callback
    from fastcore.basics import defaults
    seen = []
    class Batches(Callback):
        def _on(self): return self.training and not hasattr(self.learn, 'lr_finder')
        def before_batch(self):
            if self._on() and self.iter == 0: seen.append([tuple(self.x.shape), 0])
        def after_step(self):
            if self._on(): seen[-1][1] += 1
    monkeypatch.setattr(defaults, 'callbacks', list(defaults.callbacks) + [Batches])
    return seen


@slow
def test_progressive_resizing_changes_the_size_it_trains_at(workspace, monkeypatch):
    seen = _batches(monkeypatch)
    run = train.train(tc(epochs=3, sizes='32,48,64'), quiet=True)
    # without gradient accumulation the batch size stays the recipe's (more per batch would be fewer, larger steps)
    assert [shape for shape, _ in seen] == [(16, 3, 32, 32), (16, 3, 48, 48), (16, 3, 64, 64)]
    assert run.config['sizes'] == [[32, 32], [48, 48], [64, 64]] and run.config['size'] == [64, 64]


@slow
def test_progressive_resizing_trains_more_images_per_batch_at_smaller_sizes(workspace, monkeypatch):
    # bs 4 x accum 4: at 32 px a batch of 16 holds the pixels of 4 at 64 px, so each step is one batch of 16
    seen = _batches(monkeypatch)
    run = train.train(tc(epochs=2, sizes='32,64', bs=4, accum=4), quiet=True)
    assert [shape for shape, _ in seen] == [(16, 3, 32, 32), (4, 3, 64, 64)]
    n_train = run.result['n_train']
    assert [steps for _, steps in seen] == [n_train // 16] * 2   # the same 16 images a step at both sizes
    assert run.status == 'complete'
