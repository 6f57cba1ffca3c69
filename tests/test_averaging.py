"""Which weights a run saves (comp.averaging): timm's EMA, the best epoch, the average of the last K; what predict
loads, and resume. A spy callback (fastai's, added to every Learner) records the weights each epoch validated and
the training weights it ended with."""
import json

import pandas as pd
import pytest
import torch
from fastai.vision.all import Callback   # all of fastai: its modules add Recorder etc. to defaults.callbacks
from fastcore.basics import defaults

from comp import runs, train
from comp.averaging import average
from comp.predict import load_learner
from comp.train import TrainConfig

slow = pytest.mark.slow


def tc(**kw):
    return TrainConfig(**{'arch': 'test_convnext', 'epochs': 1, 'workers': 0, **kw})


def _state(model): return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _equal(a, b): return all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def spy(monkeypatch):
    class Spy(Callback):
        order = 70   # after Averaging (60) and RunLog (65)
        validated, trained, steps, stop_after = [], [], [], None
        def _skip(self): return hasattr(self.learn, 'lr_finder') or hasattr(self, 'gather_preds')
        def after_validate(self):
            if not self._skip(): Spy.validated.append(_state(self.learn.model))
        def after_epoch(self):
            if self._skip() or len(Spy.trained) == len(Spy.validated): return   # lr_find, or an epoch skipped on resume
            Spy.trained.append(_state(self.learn.model))
            Spy.steps += [cb.step for cb in self.learn.cbs if type(cb).__name__ == 'Averaging']
            if Spy.stop_after is not None and len(Spy.trained) == Spy.stop_after: raise KeyboardInterrupt
    monkeypatch.setattr(defaults, 'callbacks', list(defaults.callbacks) + [Spy])
    return Spy


@slow
def test_ema_best_epoch_and_resume(workspace, spy):
    # Interrupted after epoch 1, resumed: the EMA continues from its stored state and step count.
    spy.stop_after = 1
    with pytest.raises(KeyboardInterrupt): train.train(tc(epochs=3, ema=0.9, keep='best'), quiet=True)
    run = runs.Run(next((workspace / 'runs').iterdir()))
    assert run.status == 'incomplete' and run.averaging_file.exists() and run.checkpoint_file.exists()
    first_epoch_steps = spy.steps[-1]
    assert first_epoch_steps > 0
    spy.stop_after = None
    train.train(None, resume=run.name, quiet=True)
    assert run.status == 'complete' and not run.averaging_file.exists()
    assert spy.steps[-1] == 3 * first_epoch_steps   # not restarted from 0
    # each epoch validated the EMA weights, not the training weights it went on from
    assert len(spy.validated) == len(spy.trained) == 3
    assert all(not _equal(v, t) for v, t in zip(spy.validated, spy.trained))
    m = pd.read_csv(run / 'metrics.csv')
    assert list(m['epoch']) == [1, 2, 3]
    best = int(m.loc[m['error_rate'][::-1].idxmin(), 'epoch'])    # the latest of equally good epochs
    saved = run.result['saved_weights']
    assert saved['weights'] == 'best' and saved['ema'] == 0.9 and saved['epochs'] == [best]
    assert saved['epoch_valid_error'] == pytest.approx(m.loc[best - 1, 'error_rate'])
    assert saved['valid_error'] == run.result['valid_error'] == pytest.approx(saved['epoch_valid_error'])
    learn, _, _ = load_learner(run)
    assert _equal(_state(learn.model), spy.validated[best - 1])   # predict loads the best epoch's EMA weights
    assert json.loads(run.config_file.read_text())['ema'] == 0.9


@slow
def test_average_of_the_last_epochs_is_saved_and_predicted(workspace, spy):
    run = train.train(tc(epochs=3, average_last=2), quiet=True)
    saved = run.result['saved_weights']
    assert saved['weights'] == 'average' and saved['epochs'] == [2, 3] and saved['ema'] is None
    want = average(spy.validated[-2:])
    assert not _equal(want, spy.trained[-1])
    learn, _, _ = load_learner(run)
    got = _state(learn.model)
    assert all(torch.allclose(got[k].double(), want[k].double()) for k in want)
    assert run.config['average_last'] == 2 and run.config['keep'] == 'last'
