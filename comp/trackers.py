"""`--tracker`: a run's epochs, config and plots also sent to TensorBoard, Weights & Biases or MLflow.

TensorBoard and W&B through fastai's own callbacks (`TensorBoardCallback`, `WandbCallback`), MLflow through its
tracking client (fastai has no MLflow callback). Everything is written locally unless the tracker is told otherwise:
TensorBoard event files in the run's `tensorboard/`; W&B in the run's `wandb/` (offline when WANDB_MODE=offline or
when this machine has no W&B login, so nothing waits on a network: `wandb sync` uploads it later); MLflow in the
tracking URI set by MLFLOW_TRACKING_URI, else the workspace's `mlflow.db` (SQLite, MLflow's own default store) with
artifacts in the workspace's `mlruns/`. The run's own records stay the reference: a tracker that fails is said in one
line and dropped, and the run trains and records on."""
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import ConfigError

MODULES = {'tensorboard': 'tensorboard', 'wandb': 'wandb', 'mlflow': 'mlflow'}   # --tracker -> the package it needs


def check(name):
    """`name` if it is a tracker whose package is installed, else a ConfigError naming the pip extra."""
    import importlib.util
    if name not in MODULES: raise ConfigError(f'--tracker {name}: use {", ".join(MODULES)}')
    if importlib.util.find_spec(MODULES[name]) is None: raise missing(name)
    return name


def missing(name):
    return ConfigError(f'--tracker {name} needs the {MODULES[name]} package, which is not installed: '
                       f'pip install "comp[{name}]"')


def plots(run):
    """The run's plots that exist (comp.runs names them), by name."""
    return {f.stem: f for f in (run.loss_plot, run.confusion_plot, run.lr_find_plot) if f.exists()}


@contextmanager
def tracking(c, run, learn):
    """Around a run's fit and records (comp.train.fit_run): the run's tracker (`c['tracker']`, none: nothing) gets
    its config and a callback for the epochs first, and the run's plots and how it ended last. Only the process that
    records the run tracks it."""
    from .distributed import is_main
    if not c.get('tracker') or not is_main():
        yield
        return
    tracker = safely(c['tracker'], 'start', lambda: TRACKERS[c['tracker']](c, run, learn))
    ok = False
    try:
        yield
        ok = True
    finally:
        if tracker is not None: safely(c['tracker'], 'finish', lambda: tracker.finish(ok))


def safely(name, what, f):
    """f(), or None with one line saying the tracker failed: a tracker is never why a run is lost."""
    try: return f()
    except Exception as e: failed(name, what, e)


def failed(name, what, e):
    """Say in one line that tracker `name` failed at `what`."""
    if isinstance(e, ImportError): why = str(missing(name))
    # fastai puts the callback's name in front of the message: its last line is the tracker's own
    else: why = f'{type(e).__name__}: {(str(e).strip().splitlines() or [""])[-1].strip()[:200]}'
    print(f'tracker {name} failed at {what} ({why}); the run goes on without it, its own records are complete',
          file=sys.stderr, flush=True)


def guarded(cls, name):
    """fastai callback class `cls` whose errors are said once and switch it off instead of stopping the fit."""
    from fastai.callback.core import Callback
    from fastai.callback.core import CancelBatchException, CancelEpochException, CancelFitException, \
        CancelStepException, CancelTrainException, CancelValidException, CancelBackwardException
    control = (CancelBatchException, CancelEpochException, CancelFitException, CancelStepException,
               CancelTrainException, CancelValidException, CancelBackwardException)

    class Guarded(cls):
        def __call__(self, event_name):
            if getattr(self, 'broken', False): return None
            try: return Callback.__call__(self, event_name)
            except control: raise
            except Exception as e:
                self.broken = True
                failed(name, event_name, e)
    Guarded.__name__ = Guarded.__qualname__ = cls.__name__   # fastai names a callback's attribute after its class
    return Guarded


def flat_config(c):
    """A run's config as flat name -> text pairs, as trackers take parameters."""
    return {k: v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v, default=str)
            for k, v in c.items()}


def _png(path):
    import numpy as np
    from PIL import Image
    with Image.open(path) as im: return np.asarray(im.convert('RGB'))


class TensorBoard:
    """fastai's TensorBoardCallback (losses per batch, validation loss and metrics per epoch) into the run's
    tensorboard/; the config as text first, the run's plots as images last."""
    def __init__(self, c, run, learn):
        from torch.utils.tensorboard import SummaryWriter
        self.dir, self.run = str(Path(run) / 'tensorboard'), run
        with SummaryWriter(self.dir) as w: w.add_text('config', f'```\n{json.dumps(c, indent=1, default=str)}\n```')
        # No model graph (tracing fails on some timm models) and no prediction images (comp's plots are logged instead).
        learn.add_cb(guarded(tensorboard_callback(), 'tensorboard')(log_dir=self.dir, trace_model=False, log_preds=False))

    def finish(self, ok):
        from torch.utils.tensorboard import SummaryWriter
        with SummaryWriter(self.dir) as w:
            for name, f in plots(self.run).items(): w.add_image(name, _png(f), dataformats='HWC')
            if not ok: w.add_text('status', 'the run stopped before it finished')


def tensorboard_callback():
    """fastai's TensorBoardCallback, logging training batches only and numeric hyper-parameters only."""
    from fastai.callback.tensorboard import TensorBoardCallback

    class TensorBoardCallback(TensorBoardCallback):
        def after_batch(self):
            # fastai's logs every hyper-parameter, but PyTorch's AdamW (comp.learner.adamw) has some that are None
            # or flags; and get_preds' batches after the fit would reopen the closed writer.
            if not self.training: return
            self.writer.add_scalar('train_loss', self.smooth_loss, self.train_iter)
            for i, h in enumerate(self.opt.hypers):
                for k, v in h.items():
                    if isinstance(v, (int, float)) and not isinstance(v, bool): self.writer.add_scalar(f'{k}_{i}', v, self.train_iter)
    return TensorBoardCallback


class Wandb:
    """fastai's WandbCallback in a W&B run named after the comp run, its files in the run's wandb/."""
    def __init__(self, c, run, learn):
        import wandb
        from fastai.callback.wandb import WandbCallback
        self.run, self.wandb = run, wandb
        mode = None if os.environ.get('WANDB_MODE') or wandb.api.api_key else 'offline'   # no login: nothing to wait for
        if mode: print(f'tracker wandb: no W&B login here; logging offline to {Path(run) / "wandb"} (`wandb sync` '
                       'uploads it)', file=sys.stderr, flush=True)
        wandb.init(project=os.environ.get('WANDB_PROJECT') or 'comp', name=run.name, dir=str(run), mode=mode,
                   config=flat_config(c), settings=wandb.Settings(console='off', silent=True))
        # fastai's callback adds every object the learner was built with to the W&B config, and fails on some (vars()
        # of an object without a __dict__): this learner's config is the run's own, given to wandb.init above.
        learn.gather_args = dict
        learn.add_cb(guarded(WandbCallback, 'wandb')(log=None, log_preds=False))

    def finish(self, ok):
        try:
            if ok: self.wandb.log({name: self.wandb.Image(str(f)) for name, f in plots(self.run).items()})
        finally: self.wandb.finish(exit_code=0 if ok else 1)


class MLflow:
    """An MLflow run named after the comp run: the config as parameters, each epoch's losses and metrics (step: the
    run's epoch), the run's plots as artifacts."""
    def __init__(self, c, run, learn):
        import logging
        from mlflow.tracking import MlflowClient
        logging.getLogger('mlflow').setLevel(logging.WARNING)   # the store's set-up chatter
        logging.getLogger('alembic').setLevel(logging.WARNING)
        work = Path(run).resolve().parent.parent   # the workspace: runs/<run>
        uri = os.environ.get('MLFLOW_TRACKING_URI') or f'sqlite:///{work / "mlflow.db"}'
        self.client, self.run = MlflowClient(uri), run
        name = Path(c.get('data') or 'comp').name
        exp = self.client.get_experiment_by_name(name)
        exp_id = exp.experiment_id if exp else self.client.create_experiment(
            name, artifact_location=None if os.environ.get('MLFLOW_TRACKING_URI') else (work / 'mlruns').as_uri())
        self.id = self.client.create_run(exp_id, run_name=run.name, tags={'comp.run': str(Path(run).resolve())}).info.run_id
        params = flat_config(c)
        from mlflow.entities import Param
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100): self.client.log_batch(self.id, params=items[i:i + 100])
        learn.add_cb(guarded(epoch_logger(), 'mlflow')(self.client, self.id))

    def finish(self, ok):
        try:
            for f in plots(self.run).values(): self.client.log_artifact(self.id, str(f), 'plots')
        finally: self.client.set_terminated(self.id, 'FINISHED' if ok else 'FAILED')


def epoch_logger():
    """The fastai callback class that logs each epoch's values to an MLflow run."""
    from fastai.callback.core import Callback
    from fastai.learner import Recorder
    from .callbacks import aside, epoch_values, run_epoch

    class MLflowEpochs(Callback):
        order = Recorder.order + 1   # after the Recorder has the epoch's values

        def __init__(self, client, run_id): self.client, self.run_id = client, run_id

        def after_epoch(self):
            if aside(self): return
            import time
            from mlflow.entities import Metric
            now, step = int(time.time() * 1000), run_epoch(self)
            ms = [Metric(k, float(v), now, step) for k, v in epoch_values(self.recorder).items() if v is not None]
            self.client.log_batch(self.run_id, metrics=ms)
    return MLflowEpochs


TRACKERS = {'tensorboard': TensorBoard, 'wandb': Wandb, 'mlflow': MLflow}
