"""`comp auto`'s probe: how fast a candidate recipe trains and predicts on this machine, from a few batches of
training and a validation pass, timed (random weights, in a temporary folder: nothing saved, no run made). It goes
through the public training API (comp.config's resolved config, comp.learner's training learner and save_model),
as a run would train, so the times are a run's."""
import time

from .errors import ConfigError

PROBE_SHARE = 0.1                 # the probes may take at most this share of the budget
PROBE_BATCHES = (10, 4)           # training and validation batches timed per candidate (fewer if the data has fewer)


def _probe_all(cfgs, comp, workdir, share, echo):
    """({arch: probe}, skipped): every candidate's TrainConfig in `cfgs` (best first) that can train here timed,
    until the probes took `share` seconds."""
    probes, skipped = {}, []
    for cfg in cfgs:
        arch = cfg.arch
        if sum(p['probe_s'] for p in probes.values()) > share:
            skipped.append({'arch': arch, 'why': 'not probed: the probes used their share of the budget'})
            continue
        why = _unavailable(cfg)
        if why:
            skipped.append({'arch': arch, 'why': why})
            echo(f'skipping {arch}: {why}')
            continue
        try: p = probe(cfg, comp, workdir)
        except (RuntimeError, MemoryError) as e:   # out of GPU memory at the recipe's batch size, say
            why = f'its probe failed ({type(e).__name__}: {(str(e).splitlines() or [""])[0][:120]})'
            skipped.append({'arch': arch, 'why': why})
            echo(f'skipping {arch}: {why}')
            continue
        finally: _free_gpu()
        probes[arch] = p
        echo(f'probed {arch}: {1 / p["train_s"]:.0f} training images/s, {1 / p["predict_s"]:.0f} predicted images/s '
             f'({p["probe_s"]:.0f}s)')
    return probes, skipped


def _free_gpu():
    """Give the probe's GPU memory back before the next candidate's."""
    import gc
    import torch
    gc.collect()
    if torch.cuda.is_available(): torch.cuda.empty_cache()


def _unavailable(cfg):
    """Why a candidate cannot train here (its pretrained weights are neither given, cached nor downloadable), or None."""
    from . import zoo
    from .config import resolve
    c = resolve(cfg)
    if not c['pretrained']: return None
    try:
        if c.get('weights'): zoo.weights_file(c['arch'], c['weights'])
        else: zoo.check_hub(c['arch'])
    except ConfigError as e: return str(e).replace(c['arch'], cfg.arch)   # the recipe's name: said once for all (plan._reasons)
    return None


def probe(cfg, comp, workdir='.', batches=PROBE_BATCHES):
    """Time `cfg`'s recipe on this machine: seconds per training image and per predicted image (the first batch of
    each, which starts the loaders and decodes, is timed apart as per-epoch overhead), building the learner, saving
    the weights. Random weights (the speed is the same) in a temporary folder: no run is made."""
    import tempfile
    from pathlib import Path
    from .cache import release
    from .config import resolve, total_epochs
    from .learner import no_bars, save_model, training_learner
    t0 = time.time()
    c = resolve(cfg, comp)
    with tempfile.TemporaryDirectory(prefix='comp-probe-') as tmp:
        learn, _ = training_learner({**c, 'pretrained': False}, comp, tmp, workdir)
        built = time.time()
        try:
            no_bars(learn)
            # At most half an epoch's batches, so a probe costs less than the epoch it estimates.
            timer = _timer(*(max(2, min(b, len(dl) // 2)) for b, dl in zip(batches, (learn.dls.train, learn.dls.valid))))
            learn.fit(1, lr=c['lr'] if c['lr'] != 'auto' else 1e-3, cbs=[timer])
            t = time.time()
            save_model(Path(tmp) / 'probe.pth', learn)
            save_s = time.time() - t
        finally: release(learn.dls)
    tr, va = timer.rate(True), timer.rate(False)
    return {'arch': c['name'], 'bs': c['bs'], 'train_batch_s': tr[0], 'predict_batch_s': va[0],
            'train_s': tr[0] / c['bs'], 'predict_s': va[0] / c['bs'],
            'epoch_overhead_s': round(tr[1] + va[1] + save_s, 3),
            'build_s': round(built - t0, 3), 'save_s': round(save_s, 3), 'epochs': c['epochs'],
            'frozen_epochs': total_epochs(c) - c['epochs'], 'batches': [tr[2], va[2]], 'probe_s': round(time.time() - t0, 1)}


def _timer(n_train, n_valid):
    """A fastai callback that times the first `n_train` training and `n_valid` validation batches, then ends each."""
    import torch
    from fastai.callback.core import Callback, CancelTrainException, CancelValidException
    from fastai.learner import Recorder
    from fastai.torch_core import find_bs

    class Timer(Callback):
        # after_batch last, after the Recorder and every other callback of a training learner (fastai's go up to
        # SkipToEpoch's 70): a timed batch holds their per-batch work, as a run's batch does
        order = Recorder.order + 50

        def __init__(self): self.marks, self.starts = {True: [], False: []}, {}

        def before_train(self): self.starts[True] = time.time()

        def before_validate(self): self.starts[False] = time.time()

        def after_batch(self):
            if torch.cuda.is_available(): torch.cuda.synchronize()   # the batch's work done, not only queued
            m = self.marks[self.training]
            m.append((time.time(), find_bs(self.yb)))
            if len(m) >= (n_train if self.training else n_valid):
                raise CancelTrainException() if self.training else CancelValidException()

        def rate(self, training):
            """(seconds per batch, first-batch overhead in seconds, batches timed). Per batch, not per image: a
            small last batch costs about as much as a full one (a small data set's validation may have no other)."""
            m, t0 = self.marks[training], self.starts[training]
            if len(m) < 2: return m[0][0] - t0, 0.0, len(m)
            per = (m[-1][0] - m[0][0]) / (len(m) - 1)
            return per, max(0.0, m[0][0] - t0 - per), len(m)

    return Timer()
