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
from comp.config import TrainConfig

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


class _Mixed:
    """What each training batch of a run saw, from two spy callbacks around fastai's MixUp/CutMix (order 0)."""

    def __init__(self): self.raw, self.changed, self.losses, self.lams, self.steps = None, [], [], [], 0


@pytest.fixture(scope='module')
def sync_free_runs(tiny_sample, tmp_path_factory):
    """{'mixup': run, 'cutmix': run, ...}: two runs of comp.loop's sync-free loop with EMA, one with MixUp, one with
    CutMix, trained once for this module, with what their batches and epochs saw."""
    from fastai.callback.mixup import MixHandler
    from comp import competition
    seen = {}
    def skip(cb): return hasattr(cb.learn, 'lr_finder') or hasattr(cb, 'gather_preds') or not cb.training

    class BeforeMix(Callback):
        order = -1   # after DeviceFeed (-20) copied the batch, before MixUp/CutMix (0) mix it
        def before_batch(self):
            if not skip(self): seen['now'].raw = self.x.detach().clone()

    class AfterMix(Callback):
        order = 70   # after Averaging (60) and RunLog (65) in after_epoch
        def before_batch(self):
            if skip(self): return
            mix = next(cb for cb in self.learn.cbs if isinstance(cb, MixHandler))
            # CutMix's box is empty, once in thousands of batches, when its lam is drawn within 1e-3 of 1
            seen['now'].changed.append(not torch.equal(self.x, seen['now'].raw) or float(mix.lam.min()) == 1)
        def after_loss(self):
            if skip(self): return
            # the loss fastai's MixHandler should have computed: its blend of both labels' cross-entropies
            mix = next(cb for cb in self.learn.cbs if isinstance(cb, MixHandler))
            with torch.no_grad():
                ce = lambda y: torch.nn.functional.cross_entropy(self.pred, y, reduction='none')
                want = torch.lerp(ce(mix.yb1[0]), ce(self.y), mix.lam).mean()
            seen['now'].losses.append((float(self.loss), float(want), float(ce(self.y).mean())))
            seen['now'].lams.append(float(mix.lam.min()))
        def after_step(self):
            if not skip(self): seen['now'].steps += 1
        def after_validate(self):
            if not (hasattr(self.learn, 'lr_finder') or hasattr(self, 'gather_preds')):
                seen['now'].validated = _state(self.learn.model)
        def after_epoch(self):
            if not (hasattr(self.learn, 'lr_finder') or hasattr(self, 'gather_preds')):
                seen['now'].trained = _state(self.learn.model)
                seen['now'].ema_steps = next(cb.step for cb in self.learn.cbs if type(cb).__name__ == 'Averaging')

    ws = tmp_path_factory.mktemp('sync-free')
    competition.record(competition.load(tiny_sample), ws)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(defaults, 'callbacks', list(defaults.callbacks) + [BeforeMix, AfterMix])
        for name, kw in (('mixup', dict(mixup=0.4)), ('cutmix', dict(cutmix=1.0))):
            seen['now'] = out[name + '_seen'] = _Mixed()
            out[name] = train.train(tc(epochs=2, sync_free=True, ema=0.9, **kw), workdir=ws, quiet=True)
    return out


@slow
@pytest.mark.parametrize('mixer', ['mixup', 'cutmix'])
def test_sync_free_loop_mixes_batches_and_trains_with_the_mixed_loss(sync_free_runs, mixer):
    run, seen = sync_free_runs[mixer], sync_free_runs[mixer + '_seen']
    assert run.status == 'complete' and run.config['sync_free'] is True and run.config[mixer] > 0
    assert seen.changed and all(seen.changed)   # every training batch was mixed (but for an empty CutMix box)
    # the loss trained on is MixHandler's blend of both labels' losses, not the plain loss on the batch's own labels
    assert all(got == pytest.approx(want, rel=1e-4) for got, want, _ in seen.losses)
    assert any(lam < 0.9 and abs(got - plain) > 1e-3 for (got, _, plain), lam in zip(seen.losses, seen.lams))
    m = pd.read_csv(run / 'metrics.csv')
    assert list(m['epoch']) == [1, 2] and m[['train_loss', 'valid_loss', 'error_rate']].notna().all().all()


@slow
@pytest.mark.parametrize('mixer', ['mixup', 'cutmix'])
def test_sync_free_loop_keeps_the_ema_and_saves_it(sync_free_runs, mixer):
    run, seen = sync_free_runs[mixer], sync_free_runs[mixer + '_seen']
    assert seen.steps > 0 and seen.ema_steps == seen.steps   # one EMA update per optimizer step
    assert not _equal(seen.validated, seen.trained)           # the last epoch validated the EMA, not the training weights
    saved = run.result['saved_weights']
    assert saved['weights'] == 'last' and saved['ema'] == 0.9 and saved['epochs'] == [2]
    learn, _, _ = load_learner(run)
    assert _equal(_state(learn.model), seen.validated)        # and predict loads the EMA weights
    m = pd.read_csv(run / 'metrics.csv')
    # the error recorded for epoch 2 (the EMA weights, read back on the device) is that of the saved predictions
    assert saved['epoch_valid_error'] == pytest.approx(m['error_rate'].iloc[-1]) == pytest.approx(run.result['valid_error'])


@slow
def test_a_damaged_averaging_state_on_resume_is_one_line_and_the_run_stays_resumable(workspace, spy):
    from conftest import comp_cli, one_line
    spy.stop_after = 1   # interrupted after epoch 1 of 2: its EMA is in averaging.pth
    with pytest.raises(KeyboardInterrupt): train.train(tc(epochs=2, ema=0.99), quiet=True)
    run = runs.Run(next((workspace / 'runs').iterdir()))
    assert run.status == 'incomplete' and run.averaging_file.exists()
    run.averaging_file.write_bytes(run.averaging_file.read_bytes()[:2000])   # cut short
    status = run.status_file.read_bytes()
    one_line(comp_cli('train', '--resume', run.name, cwd=workspace), 'averaging.pth cannot be read', 'delete it')
    assert run.status == 'incomplete' and run.status_file.read_bytes() == status   # not turned into a failed run
    run.averaging_file.unlink()
    spy.stop_after = None
    train.train(None, resume=run.name, quiet=True)
    assert run.status == 'complete' and run.result['saved_weights']['ema'] == 0.99
    assert list(pd.read_csv(run / 'metrics.csv')['epoch']) == [1, 2]
