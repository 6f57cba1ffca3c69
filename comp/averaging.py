"""Which weights a run saves: the last epoch's, timm's EMA of them, the best epoch's by validation error, or the
average of the last K epochs' (timm's avg_checkpoints). Imported only when training: it imports fastai and timm."""
import torch
from fastai.callback.core import Callback
from fastai.learner import Recorder

from .callbacks import aside, epoch_values, run_epoch
from .errors import CompError
from .files import atomic_path

ERROR_METRICS = ('error_rate', 'disease_error', 'error')   # Paddy's single and two-headed models' error; another metric's


def for_config(c, run):
    """The Averaging callback a resolved config asks for, or None when it saves the last epoch's weights."""
    ema, keep, k = c['ema'], c['keep'], c['average_last']
    if not ema and keep == 'last' and not k: return None
    return Averaging(run, ema, keep, k)


def damaged_state(run, f):
    """The error for a run's checkpoint or averaging state `f` that cannot be read, saying how to go on."""
    if f == run.checkpoint_file:
        also = f' and {run.averaging_file.name}' if run.averaging_file.exists() else ''
        how = f'delete it{also} to resume run {run.name} from its first epoch'
    else: how = f'delete it to resume run {run.name} with its weight averaging started again from the checkpoint'
    return CompError(f'{f} cannot be read (cut short or damaged): {how}, or train a new run')


def _cpu(state): return {k: v.detach().to('cpu', copy=True) for k, v in state.items()}


def average(states):
    """The element-wise mean of state dicts, in float64 as timm's avg_checkpoints does; integer buffers from the last."""
    out = {}
    for k, v in states[-1].items():
        if v.is_floating_point(): out[k] = (sum(s[k].double() for s in states) / len(states)).to(v.dtype)
        else: out[k] = v.clone()
    return out


class Averaging(Callback):
    """Keeps timm's ModelEmaV3 of the weights (updated after each optimizer step, validated each epoch in place of
    the training weights), the best validated epoch's weights and the last K epochs'; `finish` loads the chosen ones.

    What it keeps is written to the run each epoch (`Run.averaging_file`), so a resumed run continues it."""
    order = Recorder.order + 10  # after_epoch: after the Recorder has the epoch's values, before RunLog checkpoints

    def __init__(self, run, ema=0.0, keep='last', average_last=0):
        self.run_dir, self.decay, self.keep, self.k = run, float(ema), keep, int(average_last)
        self.ema, self.step, self.best, self.recent, self.last, self.train_state = None, 0, None, [], None, None
        self.skipping, self._ema_state = False, None
        f = run.averaging_file
        if f.exists():   # a resumed run: what the epochs before the interruption kept
            try:
                st = torch.load(f, map_location='cpu', weights_only=True)
                self.step, self.best, self.recent, self.last = st['step'], st['best'], st['recent'], st['last']
                self._ema_state = st['ema']
            except Exception as e:   # whole (comp.train checked it) but not what comp wrote
                raise damaged_state(run, f) from e

    def before_fit(self):
        if aside(self) or not self.decay or self.ema is not None: return
        from timm.utils.model_ema import ModelEmaV3
        # Warm-up (decay 1 - (1 + step)^-2/3, capped at `ema`): on short runs a plain decay would keep mostly the
        # random initial weights, as timm's maintainer warns.
        self.ema = ModelEmaV3(self.learn.model, decay=self.decay, use_warmup=True)
        if self._ema_state is not None: self.ema.module.load_state_dict(self._ema_state)

    def before_epoch(self): self.skipping = False

    def after_cancel_epoch(self): self.skipping = True

    def after_step(self):
        # after_step only follows a real optimizer step (GradientAccumulation cancels the batch before it).
        if self.ema is None or aside(self): return
        self.step += 1
        self.ema.update(self.learn.model, step=self.step)

    def before_validate(self):
        if self.ema is None or aside(self): return
        self.train_state = _cpu(self.learn.model.state_dict())
        self.learn.model.load_state_dict(self.ema.module.state_dict())

    def _error(self):
        vals = epoch_values(self.recorder)
        return next((vals[n] for n in ERROR_METRICS if n in vals), vals.get('valid_loss'))

    def after_epoch(self):
        if self.skipping or aside(self): return
        epoch = run_epoch(self)
        err = self._error()
        state = _cpu(self.learn.model.state_dict())   # the weights just validated: the EMA's when on
        self.last = (epoch, err)
        if self.keep == 'best' and (self.best is None or err <= self.best[1]): self.best = (epoch, err, state)
        if self.k:
            self.recent = [r for r in self.recent if r[0] < epoch][-(self.k - 1):] if self.k > 1 else []
            self.recent.append((epoch, err, state))
        with atomic_path(self.run_dir.averaging_file) as tmp:
            torch.save({'step': self.step, 'best': self.best, 'recent': self.recent, 'last': self.last,
                        'ema': self.ema.module.state_dict() if self.ema is not None else None}, tmp)
        if self.train_state is not None:   # training (and RunLog's checkpoint) continue from the training weights
            self.learn.model.load_state_dict(self.train_state)
            self.train_state = None

    def finish(self):
        """Load the weights the run saves into the model, stop, and say which they are."""
        learn = self.learn
        learn.remove_cb(self)   # the run's final get_preds must not swap weights
        ema = self.decay or None
        if self.k:
            state, epochs, err = average([r[2] for r in self.recent]), [r[0] for r in self.recent], None
            kind = 'average'
        elif self.keep == 'best':
            (_, err, state), epochs, kind = self.best, [self.best[0]], 'best'
        else:
            state, epochs, err, kind = self.ema.module.state_dict(), [self.last[0]], self.last[1], 'last'
        learn.model.load_state_dict(state)
        return {'weights': kind, 'ema': ema, 'epochs': epochs, 'epoch_valid_error': err}
