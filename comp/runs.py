"""Run directories: naming, status, the environment record, and the runs table."""
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from .errors import CompError
from .machine import cpus
from .files import read_json, write_json

RUNS_DIR = 'runs'


def create(workdir, cfg):
    """A new run directory under `workdir/runs`, with the config and environment recorded and status 'running'."""
    stamp = time.strftime('%Y%m%d-%H%M%S')
    base = Path(workdir) / RUNS_DIR / f'{stamp}-{re.sub(r"[^A-Za-z0-9_.-]", "_", cfg["name"])}'
    run, k = base, 1
    while run.exists(): run, k = Path(f'{base}-{k}'), k + 1
    run.mkdir(parents=True)
    write_json(run / 'config.json', cfg)
    write_json(run / 'env.json', environment())
    set_status(run, 'running')
    return run


def set_status(run, status, **extra):
    """Record the run's status ('running', 'complete', 'failed') with the process id and time."""
    old = read_json(Path(run) / 'status.json') if (Path(run) / 'status.json').exists() else {}
    old.update(extra, status=status, pid=os.getpid(), updated=time.strftime('%Y-%m-%d %H:%M:%S'))
    write_json(Path(run) / 'status.json', old)


def status(run):
    """'complete', 'failed', 'running', or 'incomplete' for a run whose process died without finishing."""
    f = Path(run) / 'status.json'
    if not f.exists(): return 'incomplete'
    st = read_json(f)
    if st['status'] == 'running' and not _alive(st.get('pid')): return 'incomplete'
    return st['status']


def _alive(pid):
    if not pid: return False
    try: os.kill(pid, 0)
    except OSError: return False
    # A zombie left by a killed child still answers kill(0); it is not running.
    try: return Path(f'/proc/{pid}/stat').read_text().split(')')[-1].split()[0] != 'Z'
    except OSError: return True


def find(run, workdir='.'):
    """A run directory from a path or a name under `workdir/runs`."""
    for p in (Path(run), Path(workdir) / RUNS_DIR / run):
        if (p / 'config.json').exists(): return p
    raise CompError(f'no run {run!r}: pass a run directory or a name from `comp runs`')


def environment():
    """Versions, git commit and device, so every run records what produced it."""
    from importlib.metadata import PackageNotFoundError, version
    vers = {}
    for pkg in ('comp', 'fastai', 'timm', 'torch', 'torchvision', 'pandas', 'numpy', 'pillow'):
        try: vers[pkg] = version(pkg)
        except PackageNotFoundError: vers[pkg] = None
    env = {'python': sys.version.split()[0], 'platform': platform.platform(), 'packages': vers,
           'cpu_count': cpus(), 'git_commit': _git_commit(), 'argv': sys.argv}
    try:
        import torch
        env['device'] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'
    except ImportError: pass
    return env


def _git_commit():
    try:
        return subprocess.run(['git', 'rev-parse', 'HEAD'], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError): return None


def summary(run):
    """One row of the runs table for a run directory."""
    run = Path(run)
    cfg = read_json(run / 'config.json')
    res = read_json(run / 'result.json') if (run / 'result.json').exists() else {}
    return {'run': run.name, 'arch': cfg['name'], 'size': 'x'.join(map(str, cfg['size'])), 'epochs': cfg['epochs'],
            'lr': cfg['lr'], 'precision': res.get('precision', cfg['precision']), 'target': cfg['target'],
            'fold': f'{cfg["fold"]}/{cfg["folds"]}' if cfg.get('folds') else '-',
            'error': res.get('valid_error'), 'tta_error': res.get('valid_error_tta'),
            'minutes': round(res['seconds'] / 60, 1) if 'seconds' in res else None, 'status': status(run)}


def table(workdir='.'):
    """Every run under `workdir/runs`, best validation error first (unfinished runs last)."""
    root = Path(workdir) / RUNS_DIR
    rows = [summary(p) for p in sorted(root.iterdir()) if (p / 'config.json').exists()] if root.exists() else []
    return sorted(rows, key=lambda r: (r['error'] is None, r['error'] if r['error'] is not None else 0))
