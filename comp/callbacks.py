"""fastai callbacks and losses for comp's runs (imported only when training: it imports fastai)."""
import math
import time

import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.learner import Recorder, save_model

from .errors import TrainingError
from .files import atomic_path


def aside(cb):
    """Whether callback `cb`'s learner is in lr_find's mock fit or in get_preds: not epochs of the run (fastai's own
    test, as its ProgressCallback makes it)."""
    return hasattr(cb.learn, 'lr_finder') or hasattr(cb, 'gather_preds')


def set_epochs_before(learn, n):
    """Tell the run's callbacks that `n` of the run's epochs came before the next fit (fine_tune's frozen phase)."""
    learn.epochs_before = n


def run_epoch(cb):
    """The run's epoch in progress in callback `cb`, counted from 1 across fine_tune's two fits."""
    return getattr(cb.learn, 'epochs_before', 0) + cb.epoch + 1


class RunLog(Callback):
    """Per-epoch metrics, an atomic checkpoint and the epochs done, recorded in the Run; and one line per epoch."""
    order = Recorder.order + 15  # after the Recorder has the epoch's values (and comp.averaging has swapped weights)

    def __init__(self, run, quiet=False, record=True):
        # record=False: a data-parallel process other than the first, which times epochs but writes nothing
        self.run_dir, self.quiet, self.times, self.skipping = run, quiet, [], False
        self.record = record

    def before_epoch(self): self.skipping, self.t0 = False, time.time()

    def after_cancel_epoch(self): self.skipping = True

    def after_epoch(self):
        # Epochs skipped on resume, lr_find's mock fit and get_preds are not epochs of this run.
        if self.skipping or aside(self): return
        secs = time.time() - self.t0
        self.times.append(secs)
        epoch = run_epoch(self)
        row = {'epoch': epoch, **epoch_values(self.recorder), 'seconds': round(secs, 2), 'lr': head_lr(self.learn)}
        run = self.run_dir
        if self.record:
            old = run.metrics()
            if len(old): old = old[old['epoch'] < epoch]
            run.write_metrics(pd.concat([old, pd.DataFrame([row])]))
        # Weights that gave a NaN or infinite loss cannot train on: stop before they become the checkpoint.
        bad = [(k, v) for k, v in row.items() if k.endswith('loss') and v is not None and not math.isfinite(v)]
        if bad:
            k, v = bad[0]
            raise TrainingError(f'training stopped in epoch {epoch}: the {k} is {v}, so the weights diverged; '
                                'train a new run with a lower --lr (or --lr auto)')
        if not self.record: return
        with atomic_path(run.checkpoint_file) as tmp:
            save_model(tmp, self.learn.model, getattr(self.learn, 'opt', None))
        run.set_status('running', epochs_done=epoch)
        if not self.quiet:
            vals = '  '.join(f'{k} {v:.4f}' for k, v in row.items() if k not in ('epoch', 'seconds', 'lr') and v is not None)
            print(f'epoch {epoch}: {vals}  {secs:.1f}s', flush=True)

    def seconds_per_epoch(self): return round(sum(self.times) / len(self.times), 2) if self.times else None

    def images_per_second(self, n): return round(n * len(self.times) / sum(self.times), 1) if self.times else None


def head_lr(learn):
    """The head's learning rate where the epoch ended (the last parameter group's: the one fine_tune's frozen epoch trains),
    so a run's learning curves show the rate its schedule set, not one rebuilt from its config."""
    opt = getattr(learn, 'opt', None)
    return float(opt.hypers[-1]['lr']) if opt is not None and opt.hypers else None


def epoch_values(recorder):
    """The Recorder's values of the last epoch by name (train_loss, valid_loss, metrics); None where a run has no
    validation set (fastai records None then)."""
    names = [n for n in recorder.metric_names[1:] if n != 'time']
    return {k: None if v is None else float(v) for k, v in zip(names, recorder.values[-1])}


class MultiTargetLoss:
    """Sum of cross-entropies over heads laid side by side in one output (disease first); with `eps`, each head's is
    fastai's label-smoothing cross-entropy."""

    def __init__(self, sizes, eps=0):
        from fastai.losses import LabelSmoothingCrossEntropyFlat
        self.sizes = list(sizes)
        self.heads = [LabelSmoothingCrossEntropyFlat(eps=eps) if eps else F.cross_entropy for _ in self.sizes]

    def __call__(self, out, *ys):
        return sum(lf(o, y) for lf, o, y in zip(self.heads, torch.split(out, self.sizes, dim=1), ys))

    def activation(self, out): return torch.split(out, self.sizes, dim=1)[0].softmax(dim=1)

    def decodes(self, out): return out.argmax(dim=1)


def multi_target_metrics(sizes, targets):
    """An error-rate metric per head, named `<target>_error`."""
    def metric(i, name):
        def f(out, *ys): return (torch.split(out, sizes, dim=1)[i].argmax(1) != ys[i]).float().mean()
        f.__name__ = f'{"disease" if name == "label" else name}_error'
        return f
    return [metric(i, t) for i, t in enumerate(targets)]


class ProgressiveResize(Callback):
    """Progressive resizing (fastai course style): the run's epochs split in order across growing image sizes, the
    last being the run's size, by resizing the batch augmentations' output before each epoch; resumable (epoch-based).

    With gradient accumulation (`accum` > 1) a smaller size also trains more images per batch: as many of one
    optimizer step's `bs` x `accum` images as fit in the memory of a batch at the last size (images x pixels), in
    fewer batches of the step. Each step still sees `bs` x `accum` images, so the optimisation (steps, learning
    rates, what each step averages) is the recipe's, only faster. This is sound with fit_one_cycle because fastai
    places the schedule per epoch (epoch / epochs, plus batch / (that epoch's batches x epochs)), so epochs of
    different batch counts keep it on course. Without accumulation the batch size stays: more images per batch
    would mean fewer, larger steps at the recipe's learning rate, another recipe, not the same one faster."""
    order = -20   # before_epoch: before any of fastai's callbacks (TrainEvalCallback is -10) draws a batch

    def __init__(self, sizes, total_epochs, bs=None, accum=1):
        self.sizes, self.total = [tuple(s) for s in sizes], total_epochs
        self.bs, self.accum = bs, int(accum or 1)

    def size_at(self, epoch):
        """The image size of epoch `epoch` (counted from 0 over the whole run)."""
        return self.sizes[min(len(self.sizes) - 1, epoch * len(self.sizes) // self.total)]

    def bs_at(self, size, n_train):
        """The images per training batch at `size`: `bs` times the largest divisor k of `accum` (so the batches add
        up to the step's images exactly) with k x the pixels of `size` within those of the last size and k x `bs`
        within the `n_train` training images."""
        if not self.bs or self.accum <= 1: return self.bs
        last = self.sizes[-1][0] * self.sizes[-1][1]
        return self.bs * max(k for k in range(1, self.accum + 1) if self.accum % k == 0
                             and k * size[0] * size[1] <= last and k * self.bs <= n_train or k == 1)

    def _set(self, size):
        for dl in (self.dls.train, self.dls.valid):
            for t in dl.after_batch.fs:
                if getattr(t, 'size', None) is not None: t.size = size
        if self.bs: self.dls.train.bs = self.bs_at(size, len(self.dls.train.dataset))

    def before_epoch(self):
        if aside(self): return
        self._set(self.size_at(run_epoch(self) - 1))

    def after_fit(self): self._set(self.sizes[-1])   # validation predictions and TTA at the run's size


class DeadlineReached(KeyboardInterrupt):
    """Training stopped at a deadline. An interruption, as Ctrl-C is: the run (and its CV group) is recorded as
    incomplete with its last epoch checkpointed, so it resumes later, and nothing predicts from a cut-short schedule."""


class Deadline(Callback):
    """Stop before an epoch that would end after `deadline` (a `time.time()`): the epoch is taken to last as long as
    the longest one measured so far (across the runs this callback serves), else `epoch_s`, the probe's estimate.
    So training overruns the deadline by less than one epoch."""
    order = 100   # before_epoch: after fastai's SkipToEpoch (order 70) has skipped a resumed run's done epochs

    def __init__(self, deadline, epoch_s, what='the deadline'):
        self.deadline, self.epoch_s, self.what, self.measured, self.skipping = deadline, float(epoch_s), what, [], False

    def expected(self):
        """Seconds the next epoch is expected to take."""
        return max(self.measured) if self.measured else self.epoch_s

    def before_epoch(self):
        self.skipping, self.t0 = False, time.time()
        if aside(self): return
        left = self.deadline - time.time()
        if left < self.expected():
            raise DeadlineReached(f'stopped at {self.what}: {max(left, 0):.0f}s left, an epoch takes about '
                                  f'{self.expected():.0f}s; run it again to resume')

    def after_cancel_epoch(self): self.skipping = True

    def after_epoch(self):
        if not (self.skipping or aside(self)): self.measured.append(time.time() - self.t0)
