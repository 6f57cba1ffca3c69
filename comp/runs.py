"""Run directories: the only module that names their files. Creating, reading and writing runs, and the runs table.

A run directory (`runs/<time>-<name>/`) holds:
    config.json     the resolved config (every default filled in)     env.json    versions, git commit, device, argv
    status.json     running / complete / failed, pid, epochs done     result.json errors, timing, images/s, cache
    metrics.csv     one row per epoch                                 vocab.json  the classes, in output order
    model.pth       the trained weights (fastai's `learn.save`)       checkpoint.pth  the last epoch's, while training
    averaging.pth   EMA / best / last-K weights, while training (comp.averaging)
    lr_find.json / lr_find.png   with `--lr auto`                     loss.png, confusion.png
    preds_valid[_ttaN_betaB].csv / preds_test[_ttaN_betaB].csv   probabilities (id, [label,] one column per class)"""
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from .config import BETA
from .data import no_validation
from .errors import CompError
from .files import read_json, write_csv, write_json
from .machine import alive, cpus, device as machine_device, started

RUNS_DIR = 'runs'
MODEL, CHECKPOINT = 'model', 'checkpoint'   # fastai's save names: <name>.pth in the run directory


class Run:
    """A run directory and its records. Path-like: `Path(run)`, `os.fspath(run)` and `run / name` work."""
    config_file = property(lambda self: self.path / 'config.json')
    env_file = property(lambda self: self.path / 'env.json')
    status_file = property(lambda self: self.path / 'status.json')
    result_file = property(lambda self: self.path / 'result.json')
    vocab_file = property(lambda self: self.path / 'vocab.json')
    metrics_file = property(lambda self: self.path / 'metrics.csv')
    model_file = property(lambda self: self.path / f'{MODEL}.pth')
    checkpoint_file = property(lambda self: self.path / f'{CHECKPOINT}.pth')
    averaging_file = property(lambda self: self.path / 'averaging.pth')   # EMA, best and last-K weights, while training
    lr_find_file = property(lambda self: self.path / 'lr_find.json')
    lr_find_plot = property(lambda self: self.path / 'lr_find.png')
    loss_plot = property(lambda self: self.path / 'loss.png')
    confusion_plot = property(lambda self: self.path / 'confusion.png')

    def __init__(self, path):
        self.path = Path(path)
        self._config = self._result = None

    name = property(lambda self: self.path.name)
    def __fspath__(self): return str(self.path)
    def __truediv__(self, other): return self.path / other
    def __str__(self): return str(self.path)
    def __repr__(self): return f'Run({str(self.path)!r})'
    def __eq__(self, other): return isinstance(other, Run) and self.path == other.path
    def __hash__(self): return hash(self.path)

    @property
    def config(self):
        """The resolved config the run was trained with (a record older than a setting gets the value it trained with)."""
        if self._config is None:
            from .config import upgrade
            self._config = upgrade(self._record(self.config_file))
        return self._config

    @staticmethod
    def _record(path):
        """A JSON record that must be an object: valid JSON of another shape (`[]`, `3`) is a damaged record too."""
        rec = read_json(path)
        if not isinstance(rec, dict):
            raise CompError(f'{path} is damaged (not a JSON object): restore it from a backup, or delete its run folder')
        return rec

    def write_config(self, config):
        """Replace the run's config (a CV group records its fold runs as they finish)."""
        write_json(self.config_file, config)
        self._config = dict(config)

    @property
    def members(self):
        """The fold runs of a CV group, in fold order (None for a fold not trained yet); [] for a plain run."""
        return [self._part(m, f'fold {i}') if m else None for i, m in enumerate(self.config.get('members') or [])]

    @property
    def refit(self):
        """A CV group's refit on every training image (`comp cv --refit`), or None."""
        name = self.config.get('refit')
        return self._part(name, 'refit') if name else None

    def _part(self, name, what):
        """A run this CV group records; a CompError when its folder is gone (every reader of the group says so)."""
        run = Run(self.path.parent / name)
        if not run.config_file.exists():
            raise CompError(f'CV group {self.name} records {what} as run {name}, whose folder is gone (no {run.config_file}): '
                            'restore it from a backup, or cross-validate anew')
        return run

    @property
    def part_names(self):
        """The names of the runs a CV group records (folds and refit), without reading them."""
        return [m for m in [*(self.config.get('members') or []), self.config.get('refit')] if m]

    @property
    def parts(self):
        """The runs a CV group predicts with: its fold runs (None for one not trained yet) and its refit, if any."""
        return [*self.members, *([self.refit] if self.refit is not None else [])]

    @property
    def result(self):
        """What training recorded (errors, timing, ...); {} before the run is complete."""
        if self._result is None: self._result = self._record(self.result_file) if self.result_file.exists() else {}
        return self._result

    def write_result(self, result):
        """Record the run's result (replacing it)."""
        write_json(self.result_file, result)
        self._result = dict(result)

    def update_result(self, **values):
        """Add values to the run's result."""
        self.write_result({**self.result, **values})

    @property
    def vocab(self): return read_json(self.vocab_file)

    def write_vocab(self, vocab): write_json(self.vocab_file, list(vocab))

    def status_record(self):
        return self._record(self.status_file) if self.status_file.exists() else {}

    def set_status(self, status, **extra):
        """Record the run's status ('running', 'complete', 'failed', 'incomplete') with this process id and the time."""
        rec = self.status_record()
        rec.update(extra, status=status, pid=os.getpid(), started=started(os.getpid()),
                   updated=time.strftime('%Y-%m-%d %H:%M:%S'))
        write_json(self.status_file, rec)

    @property
    def env(self):
        """Versions, git commit, device and command line the run recorded ({} when it has none)."""
        return read_json(self.env_file) if self.env_file.exists() else {}

    def write_env(self, device=True): write_json(self.env_file, environment(device))

    def record_stop(self, e, lost=False):
        """Record why training stopped: Ctrl-C (or comp auto's deadline), or a partner process `lost`, leaves the run
        incomplete (resumable), anything else failed."""
        stopped = isinstance(e, KeyboardInterrupt) or lost
        # The CLI prints how to resume; a job that runs this run (a CV group, comp auto) sets its own hint after this.
        if stopped: e.comp_resume = f'resume with `comp train --resume {self.name}`'
        try: self.set_status('incomplete' if stopped else 'failed', error=(str(e) or type(e).__name__)[:500],
                             user_error=isinstance(e, CompError))
        except OSError: pass  # a full or read-only disk: the error being raised says so

    @property
    def status(self):
        """'complete', 'failed', 'running', or 'incomplete' for a run whose process died without finishing."""
        st = self.status_record()
        if not st: return 'incomplete'
        if st.get('status') == 'running' and not alive(st.get('pid'), st.get('started')): return 'incomplete'
        return st.get('status', 'incomplete')

    @property
    def epochs_done(self): return self.status_record().get('epochs_done', 0)

    def metrics(self):
        """Per-epoch metrics as a DataFrame (empty before the first epoch ends)."""
        import pandas as pd
        return pd.read_csv(self.metrics_file) if self.metrics_file.exists() else pd.DataFrame()

    def write_metrics(self, df): write_csv(self.metrics_file, df)

    @property
    def lr_find(self):
        """lr_find's suggestions and the one chosen, or None when lr_find has not run."""
        return read_json(self.lr_find_file) if self.lr_find_file.exists() else None

    def write_lr_find(self, rec): write_json(self.lr_find_file, rec)

    @staticmethod
    def tta_key(tta, beta):
        """The name of a TTA setting in file names and records: 'tta4_beta0.25'."""
        return f'tta{int(tta)}_beta{float(beta):g}'

    def preds_file(self, split, tta=0, beta=BETA):
        """Where the run keeps its 'test' or 'valid' probabilities for a TTA setting (0: none): every setting that
        changes them (passes and beta) is in the name, so one setting's file is never read for another."""
        return self.path / f'preds_{split}{"_" + self.tta_key(tta, beta) if tta else ""}.csv'

    def has_preds(self, split, tta=0, beta=BETA): return self.preds_file(split, tta, beta).exists()

    def read_preds(self, split, tta, id_col, beta=BETA):
        """Stored probabilities, with the ids (column `id_col`) and labels read as strings."""
        import pandas as pd
        return pd.read_csv(self.preds_file(split, tta, beta), dtype={id_col: str, 'label': str})

    def write_preds(self, split, df, tta=0, beta=BETA): write_csv(self.preds_file(split, tta, beta), df)

    def record_tta_error(self, tta, beta, err):
        """Record the TTA validation error of a setting (in `tta_errors`, by `tta_key`), and as the last one used
        (`valid_error_tta` with its `tta` and `beta`, what the runs table shows)."""
        errs = {**self.result.get('tta_errors', {}), self.tta_key(tta, beta): err}
        self.update_result(tta_errors=errs, valid_error_tta=err, tta=tta, beta=beta)

    def clear_checkpoint(self):
        self.checkpoint_file.unlink(missing_ok=True)
        self.averaging_file.unlink(missing_ok=True)


def create(workdir, cfg, device=True):
    """A new Run under `workdir/runs`, with the config and environment recorded and status 'running'.

    device=False leaves the GPU's name out (asking for it starts CUDA, which processes forked later cannot use)."""
    stamp = time.strftime('%Y%m%d-%H%M%S')
    base = Path(workdir) / RUNS_DIR / f'{stamp}-{re.sub(r"[^A-Za-z0-9_.-]", "_", cfg["name"])}'
    base.parent.mkdir(parents=True, exist_ok=True)
    path, k = base, 1
    while True:
        try:
            path.mkdir()  # atomic: two processes starting in the same second get different names
            break
        except FileExistsError:
            path, k = Path(f'{base}-{k}'), k + 1
    run = Run(path)
    write_json(run.config_file, cfg)
    run.write_env(device)
    run.set_status('running')
    return run


def find(run, workdir='.'):
    """A Run from a Run, a path or a name under `workdir/runs`."""
    if isinstance(run, Run): return run
    for p in (Path(run), Path(workdir) / RUNS_DIR / str(run)):
        if Run(p).config_file.exists(): return Run(p)
    raise CompError(f'no run {str(run)!r}: pass a run directory or a name from `comp runs`')


def environment(device=True):
    """Versions, git commit and device, so every run records what produced it."""
    from importlib.metadata import PackageNotFoundError, version
    vers = {}
    for pkg in ('comp', 'fastai', 'timm', 'torch', 'torchvision', 'pandas', 'numpy', 'pillow'):
        try: vers[pkg] = version(pkg)
        except PackageNotFoundError: vers[pkg] = None
    env = {'python': sys.version.split()[0], 'platform': platform.platform(), 'packages': vers,
           'cpu_count': cpus(), 'git_commit': git_commit(), 'argv': sys.argv}
    if device: env['device'] = machine_device()
    return env


def git_commit(where=None):
    """The git commit of comp's source (or of `where`), or None outside a git checkout."""
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True, timeout=5,
                              cwd=where or Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError): return None


COLUMNS = ('run', 'arch', 'size', 'epochs', 'lr', 'precision', 'target', 'fold', 'pseudo', 'metric', 'score', 'error',
           'tta_error', 'minutes', 'status')


def summary(run):
    """One row of the runs table for a run."""
    run = find(run)
    cfg, res = run.config, run.result
    run.parts   # a CV group whose fold's folder is gone is unreadable
    return {'run': run.name, 'arch': cfg['name'], 'size': 'x'.join(map(str, cfg['size'])), 'epochs': cfg['epochs'],
            'lr': cfg['lr'], 'precision': res.get('precision', cfg['precision']), 'target': cfg['target'],
            'fold': f'{cfg["fold"]}/{cfg["folds"]}' if cfg.get('folds') else 'all' if no_validation(cfg) else '-',
            'pseudo': cfg.get('pseudo', 0),
            'metric': res.get('metric'), 'score': res.get('valid_score'),   # the competition's metric, thresholds chosen on validation
            'error': res.get('valid_error'), 'tta_error': res.get('valid_error_tta'),
            'minutes': round(res['seconds'] / 60, 1) if 'seconds' in res else None, 'status': run.status}


def all_runs(workdir='.'):
    """Every run (and CV group) under `workdir/runs`, oldest first."""
    root = Path(workdir) / RUNS_DIR
    return [Run(p) for p in sorted(root.iterdir()) if Run(p).config_file.exists()] if root.exists() else []


def trained(c, workdir='.', kind=None):
    """The newest run (with kind 'cv', CV group) trained before with resolved config `c`, complete or incomplete
    (to resume), else None: how a notebook, a CV group and comp auto find their earlier work. The rule: the record
    holds every setting of `c`'s identity (comp.config.identity) with the same value; it may hold more."""
    from .config import identity
    want = identity(c)
    for r in reversed(all_runs(workdir)):
        try:
            if r.config.get('kind') != kind or r.status not in ('complete', 'incomplete'): continue
            have = identity(r.config['train'] if kind == 'cv' else r.config)
        except (CompError, KeyError, TypeError, ValueError, AttributeError): continue  # an unreadable record is not it
        if {k: v for k, v in have.items() if k in want} == want: return r
    return None


def _members(run):
    try: return run.part_names
    except (CompError, KeyError, TypeError, ValueError, AttributeError): return []  # an unreadable record lists as such below


def table(workdir='.', folds=False):
    """Every run under `workdir/runs`, best validation error first (unfinished runs last). A CV group is one row;
    its fold runs are listed too with `folds`. A run whose records cannot be read is listed as 'unreadable', with
    why, and breaks no other run's row."""
    every = all_runs(workdir)
    members = {m for r in every for m in _members(r)}
    rows = []
    for r in every:
        if r.name in members and not folds: continue
        try: rows.append(summary(r))
        except (CompError, KeyError, TypeError, ValueError, AttributeError) as e:
            rows.append({**dict.fromkeys(COLUMNS), 'run': r.name, 'status': 'unreadable', 'why': str(e) or type(e).__name__})
    return sorted(rows, key=lambda r: (r['error'] is None, r['error'] if r['error'] is not None else 0))
