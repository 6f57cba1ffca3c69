"""Data-parallel training on several processes: PyTorch DDP through Hugging Face accelerate, as fastai's
`DistributedTrainer` drives it, one process per GPU (gloo processes on a machine without GPUs).

Processes come from accelerate's `notebook_launcher` (`comp train --procs N`, and the notebooks) or from a launcher
already running them (`torchrun`, `accelerate launch`, several machines through `accelerate config`): either way
each process sees the launcher's variables (RANK, WORLD_SIZE, ...) and trains as one rank. Only rank 0 writes the
run's records. Imports torch and fastai only inside functions: `comp train` asks it whether it is the first process."""
import contextlib
import functools
import os
import sys
from contextlib import contextmanager

from .errors import ConfigError

LAUNCHER_VARS = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')
TIMEOUT_VAR = 'COMP_DIST_TIMEOUT'   # seconds a process waits for the others in a collective before it fails
TIMEOUT = 600                       # lr_find and rank 0's end-of-epoch writes fit well inside it


def launched():
    """Whether this process is one rank of several (a launcher's variables are set, WORLD_SIZE above 1).

    Half of those variables set (a stray MASTER_ADDR, a launcher that set RANK only) is a one-line error."""
    have = [v for v in LAUNCHER_VARS if os.environ.get(v)]
    if not have: return False
    missing = [v for v in LAUNCHER_VARS if v not in have]
    if missing:
        raise ConfigError(f'the launcher\'s environment is half set ({", ".join(have)} set, {", ".join(missing)} not): '
                          f'start with `torchrun`, `accelerate launch` or `comp train --procs N`, or unset {", ".join(have)}')
    try: rank, world, local = (int(os.environ[v]) for v in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'))
    except ValueError: rank = world = local = -1
    if not (0 <= rank < world and 0 <= local < world):
        raise ConfigError(f'RANK={os.environ["RANK"]}, LOCAL_RANK={os.environ["LOCAL_RANK"]}, '
                          f'WORLD_SIZE={os.environ["WORLD_SIZE"]}: a launcher sets 0 <= RANK, LOCAL_RANK < WORLD_SIZE')
    return world > 1


def rank(): return int(os.environ.get('RANK', 0)) if launched() else 0


def world(): return int(os.environ['WORLD_SIZE']) if launched() else 1


def is_main():
    """Whether this process writes the run's records: rank 0, or the only process."""
    return rank() == 0


def check_procs(procs, gpus=None):
    """`procs` (an int of 1 or more: comp.config checks it) against this machine: one process per GPU, else (no GPU)
    per CPU core."""
    import torch
    from .machine import cpus
    if gpus is None: gpus = torch.cuda.device_count()
    if gpus and procs > 1 and torch.cuda.is_initialized():
        raise ConfigError(f'--procs {procs}: this process already uses the GPU (a notebook that trained before?), '
                          'and processes forked from it cannot: restart the kernel and train with procs first')
    if gpus and procs > gpus:
        raise ConfigError(f'--procs {procs} is more than the {gpus} GPU{"s" if gpus > 1 else ""} here: '
                          f'use --procs {gpus} or fewer (one process per GPU)')
    if not gpus and procs > cpus():
        raise ConfigError(f'--procs {procs} is more than the {cpus()} CPU cores here (no GPU): use --procs {cpus()} '
                          'or fewer')
    return procs


def check_run(c):
    """A run's processes (resolved config `c`) against the GPUs here, or the launcher's process count (a resumed run
    keeps its own)."""
    procs = c['procs']
    if launched():
        if procs != world():
            raise ConfigError(f'run {c["name"]} trains on {procs} process{"es" if procs > 1 else ""}, but the '
                              f'launcher started {world()}: launch {procs}')
    elif procs > 1: check_procs(procs)


def timeout():
    """How long a process waits for the others: `COMP_DIST_TIMEOUT` seconds, else 10 minutes."""
    raw = os.environ.get(TIMEOUT_VAR)
    if raw is None: return TIMEOUT
    try: t = float(raw)
    except ValueError: t = 0
    if not t > 0: raise ConfigError(f'{TIMEOUT_VAR}={raw!r}: use a number of seconds such as 600')
    return t


def free_port():
    """A TCP port free on this machine for the processes' rendezvous (two runs at once must not share 29500)."""
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# What gloo and NCCL say when a partner process is gone (killed, out of memory) or stopped answering (the timeout)
PARTNER_LOST = ('closed by peer', 'reset by peer', 'remote process exited', 'Broken pipe', 'timed out', 'Timed out')


def partner_lost(e):
    """Whether error `e` in this process is another process's end seen from here: the run can resume."""
    import torch
    net = getattr(torch.distributed, 'DistNetworkError', ())
    return isinstance(e, net) or any(s in str(e) for s in PARTNER_LOST)


class ProcessesFailed(Exception):
    """A process of a launched run ended badly; `killed` when one was ended by a signal (the run is resumable)."""

    def __init__(self, msg, killed):
        super().__init__(msg)
        self.killed = killed


def launch(fn, procs, args=()):
    """Run fn(*args) in `procs` processes with accelerate's `notebook_launcher` (works from scripts too), on a free
    port of this machine. When one process dies the launcher ends the others; that raises ProcessesFailed."""
    from accelerate import notebook_launcher
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    timeout()   # a malformed COMP_DIST_TIMEOUT fails here, not in every process
    try:
        with contextlib.redirect_stdout(_Unlaunched(sys.stdout)), _quiet_launcher_logs():
            notebook_launcher(fn, args, num_processes=procs, use_port=str(free_port()), master_addr='127.0.0.1')
    except ChildFailedError as e:
        fails = sorted(e.failures.items())
        # exitcode < 0: ended by a signal (torch.distributed.elastic's ProcessFailure)
        what = '; '.join(f'process {r} ' + (f'was killed ({f.signal_name()})' if f.exitcode < 0 else
                                            f'failed (exit code {f.exitcode}): {_first_line(f.message)}')
                         for r, f in fails)
        raise ProcessesFailed(what, any(f.exitcode < 0 for _, f in fails)) from None


# torch's elastic agent (which notebook_launcher runs) logs a failed process's whole traceback and each signal it
# sends the others, a dozen lines before comp's own one (ProcessesFailed says which process ended, and how); when
# torch.multiprocessing's spawn context sees the dead process first, it logs the SIGTERMs it sends instead.
LAUNCHER_LOGGERS = ('torch.distributed.elastic', 'torch.distributed.launcher', 'torch.multiprocessing')


@contextmanager
def _quiet_launcher_logs():
    """The elastic agent's logging off while the processes run (and in them, forked with it); on with COMP_DEBUG=1.

    Their records stop at these loggers (a handler that drops them, no propagation to torch's stderr handler),
    whatever levels the agent's modules, some imported only as it starts, give their own loggers."""
    import logging
    if os.environ.get('COMP_DEBUG'):
        yield
        return
    drop = logging.NullHandler()
    loggers = [logging.getLogger(n) for n in LAUNCHER_LOGGERS]
    before = [log.propagate for log in loggers]
    for log in loggers:
        log.addHandler(drop)
        log.propagate = False
    try: yield
    finally:
        for log, propagate in zip(loggers, before):
            log.removeHandler(drop)
            log.propagate = propagate


class _Unlaunched:
    """sys.stdout without accelerate's 'Launching training on 2 CUDAs.', which it prints on a CPU too; the forked
    processes inherit it, so their lines pass through to the same stream."""
    def __init__(self, out): self.out = out
    def write(self, text): return len(text) if text.startswith('Launching training on') else self.out.write(text)
    def __getattr__(self, name): return getattr(self.out, name)


def _first_line(message):
    if isinstance(message, dict): message = message.get('message', message)
    return str(message).strip().splitlines()[-1][:300] if str(message).strip() else 'no message'


@contextmanager
def process_group():
    """This process's part in the group: its device (GPU LOCAL_RANK, else the CPU with its share of the cores), the
    process group with `timeout` (so a process whose partner died fails instead of waiting for ever)."""
    import datetime
    import torch
    from .machine import cpus
    local = int(os.environ['LOCAL_RANK'])
    per_node = int(os.environ.get('LOCAL_WORLD_SIZE', world()))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        backend = 'nccl'
    else:
        # N processes sharing the cores: torch's default of every core each would oversubscribe them.
        torch.set_num_threads(max(1, cpus() // per_node))
        backend = 'gloo'
    torch.distributed.init_process_group(backend, init_method='env://', timeout=datetime.timedelta(seconds=timeout()))
    try: yield
    finally: torch.distributed.destroy_process_group()


def broadcast(obj):
    """Rank 0's `obj`, on every rank (the run's folder, an error, the learning rate lr_find chose)."""
    import torch
    box = [obj]
    torch.distributed.broadcast_object_list(box, 0)
    return box[0]


@contextmanager
def alone():
    """Rank 0 working by itself (validation predictions, plots): fastai gathers from every process whenever
    WORLD_SIZE > 1 (torch_core.num_distrib), while the others wait for it."""
    old = os.environ.get('WORLD_SIZE')
    os.environ['WORLD_SIZE'] = '1'
    try: yield
    finally:
        if old is not None: os.environ['WORLD_SIZE'] = old


def barrier():
    """Wait until every process gets here."""
    import torch
    torch.distributed.barrier()


@contextmanager
def first_alone(learn):
    """The learner as one process's, on rank 0 (lr_find): no DDP, no gathering."""
    cb = next(c for c in learn.cbs if isinstance(c, _fastai_parts()[0]))
    learn.remove_cb(cb)
    try:
        with alone(): yield learn
    finally: learn.add_cb(cb)


def detach(learn):
    """The learner back to one process after fit (fastai's detach_distributed, whose own check reads WORLD_SIZE)."""
    learn.remove_cb(_fastai_parts()[0])


def to_distributed(learn):
    """Add fastai's DistributedTrainer (comp's CPU-safe version) to a learner; metrics and the validation loss over
    the whole validation set of every process; no progress bars but rank 0's."""
    import torch
    from fastai.callback.progress import ProgressCallback
    Trainer, Gathered = _fastai_parts()
    gpu = torch.cuda.is_available()
    from accelerate.utils import DistributedDataParallelKwargs
    # SyncBatchNorm (batch statistics over every process) works on GPUs only: CPU processes keep their own.
    # Unused parameters: fastai's TimmBody runs timm's forward_features, so a timm model's own head (convnext's
    # head.norm) gets no gradient, which DDP refuses unless told to look for such parameters.
    learn.add_cb(Trainer(sync_bn=gpu, cpu=not gpu,
                         kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)]))
    if rank(): learn.remove_cb(ProgressCallback)
    learn.metrics = [Gathered(m.func, m.name) for m in learn.metrics]
    learn.recorder.loss = Gathered(lambda preds, *ys: learn.loss_func(preds, *ys), 'loss')
    return learn


@functools.cache
def _fastai_parts():
    """(Trainer, Gathered), defined on first use: they subclass fastai's, and fastai loads only to train."""
    import torch
    from fastai.distributed import DistributedDL, DistributedTrainer
    from fastai.learner import Metric

    class CPUSafeDL(DistributedDL):
        # The shim: fastai 2.8, fastai/distributed.py, DistributedDL._broadcast does `LongTensor(t).cuda()  # nccl
        # only works with cuda tensors`, which fails in gloo processes without a GPU: the indices go on the device
        # of the group's backend instead. (fastai's other CUDA assumption, DistributedTrainer._wrap_dl reading
        # `self.learn.model.device`, holds: accelerate wraps the model in DDP, which has `.device`, when told `cpu`.)
        def _broadcast(self, t, rank):
            dev = 'cuda' if torch.distributed.get_backend() == 'nccl' else 'cpu'
            t = torch.tensor(t, dtype=torch.long, device=dev)
            torch.distributed.broadcast(t, rank)
            return t.cpu().tolist()

    class Trainer(DistributedTrainer):
        def _wrap_dl(self, dl):
            return dl if isinstance(dl, DistributedDL) else CPUSafeDL(dl, device=self.learn.model.device)

    class Gathered(Metric):
        """A validation metric (or the loss) of every process's predictions together: DistributedDL.to_detach
        gathers them and drops the padding that evens out the processes' shares, and `func` runs once over the
        whole set, as in one process (fastai's AvgMetric averages per-batch values, the padding's duplicates too)."""
        def __init__(self, func, name): self.func, self._name = func, name
        def reset(self): self.preds, self.targs = [], []
        def accumulate(self, learn):
            self.preds.append(learn.to_detach(learn.pred).float())
            self.targs.append([learn.to_detach(y) for y in learn.yb])
        @property
        def value(self):
            if not self.preds: return None
            return self.func(torch.cat(self.preds), *[torch.cat(t) for t in zip(*self.targs)])
        @property
        def name(self): return self._name

    return Trainer, Gathered


# A run trained by several processes. `fit(c, comp, run, workdir, resuming, quiet)` is comp.train's fit_run: it
# builds the learner and fits this process's share; what comes back is recorded by the first process only.

def train_procs(run, procs, fit, workdir, resuming, quiet):
    """Train `run` in `procs` processes that accelerate's notebook_launcher starts; this one waits for them.

    A process that is killed ends the others (the launcher) and leaves the run incomplete, to resume."""
    from .errors import CompError
    try:
        launch(_spawned, procs, (fit, run, str(workdir), resuming, quiet))
    except ProcessesFailed as e:
        rec = run.status_record()
        if e.killed or run.status == 'incomplete':
            try: run.set_status('incomplete', error=str(e)[:500])
            except OSError: pass
            raise CompError(f'training stopped: {e}; resume with `comp train --resume {run.name}`') from None
        if rec.get('status') == 'failed' and rec.get('user_error'): raise CompError(rec['error']) from None
        try: run.set_status('failed', error=str(e)[:500])
        except OSError: pass
        raise RuntimeError(f'training failed: {e}') from None
    except BaseException as e:
        run.record_stop(e)
        raise
    run = type(run)(run.path)   # what the processes recorded, read afresh
    if run.status != 'complete': raise CompError(f'run {run.name} ended without completing: see {run.status_file}')
    return run


def _spawned(fit, run, workdir, resuming, quiet):
    """One of the processes `train_procs` starts."""
    with process_group(): _rank(fit, run, workdir, resuming, quiet)


def train_as_rank(prepare, fit, workdir, resuming, quiet):
    """One process of a group a launcher started (torchrun, accelerate launch): the first runs `prepare()` (checks,
    the run directory; it returns the Run) and tells the others its folder, or the error that stopped it."""
    from .errors import CompError
    with process_group():
        run = err = None
        if is_main():
            try: run = prepare()
            except CompError as e: err = str(e)
        run, err = broadcast((run, err))
        if err is not None: raise CompError(err)
        return _rank(fit, run, workdir, resuming, quiet)


def _rank(fit, run, workdir, resuming, quiet):
    """Train `run` as this process's rank of the group; only the first process records (and prints)."""
    from . import competition
    run = type(run)(run.path)   # its records as the first process wrote them
    c = run.config
    comp = competition.find(c['data'], workdir)
    main = is_main()
    if main:
        run.set_status('running')
        if 'device' not in run.env: run.write_env()   # created by a process that left the GPU alone
    try:
        result = fit(c, comp, run, workdir, resuming, quiet or not main)
    except BaseException as e:
        # The first process often sees a killed partner before the launcher does: its error, not the kill, reaches
        # the launcher, so it records the run as stopped itself.
        if main: run.record_stop(e, lost=partner_lost(e))
        raise
    if main:
        run.write_result(result)
        run.set_status('complete')
    barrier()   # every process returns a complete run
    return type(run)(run.path)
