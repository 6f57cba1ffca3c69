"""Shared benchmark helpers: the full-scale sample competition, timing, and the results record."""
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / 'results'


def sample(scale='full', seed=42):
    """The sample competition at `scale`, written once under bench/data (ignored by git)."""
    from comp.sample import write_sample
    d = ROOT / 'data' / f'paddy-{scale}-{seed}'
    if not (d / 'train.csv').exists(): write_sample(d, scale=scale, seed=seed)
    return d


def parser(doc):
    """An argument parser with the options every benchmark takes."""
    import argparse
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument('--scale', default='full', help="sample size: small, full, or a fraction")
    return ap


def holdout_parser(doc, name, epochs=15, folds=5):
    """`parser` with the options of the benchmarks that train groups of the demo recipe on the small sample's holdout
    over several seeds: --arch, --epochs, --seeds, --folds, --frac, --extra and the results' --name."""
    ap = parser(doc)
    ap.set_defaults(scale='small')
    ap.add_argument('--arch', default='demo')
    ap.add_argument('--epochs', type=int, default=epochs)
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--folds', type=int, default=folds)
    ap.add_argument('--frac', type=float, default=0.25, help="held-out fraction of the sample's training images")
    ap.add_argument('--extra', default='workers=0', help='more TrainConfig fields for every run, e.g. "size=64,bs=32"')
    ap.add_argument('--name', default=name)
    return ap


def machine():
    """The machine as this process sees it: the cores it may use (its affinity, as `taskset` or a container sets it,
    beside the host's count), the device, versions and the git commit of the code measured."""
    import torch
    from comp.machine import cpus
    from comp.runs import git_commit
    return {'cpus_usable': cpus(), 'cpus_host': os.cpu_count(), 'platform': platform.platform(),
            'python': sys.version.split()[0], 'torch': torch.__version__,
            'device': torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu',
            'git_commit': git_commit(ROOT)}


def record(name, rows, extra=None):
    """Print a table and write bench/results/NAME.json with the machine, the command and the date."""
    cols = list(rows[0])
    w = {c: max(len(c), *(len(f'{r[c]}') for r in rows)) for c in cols}
    print('  '.join(c.ljust(w[c]) for c in cols))
    for r in rows: print('  '.join(f'{r[c]}'.ljust(w[c]) for c in cols))
    out = {'benchmark': name, 'date': time.strftime('%Y-%m-%d %H:%M:%S'), 'command': ' '.join(['python'] + sys.argv),
           'machine': machine(), 'rows': rows, **(extra or {})}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f'{name}.json').write_text(json.dumps(out, indent=2) + '\n')
    return out


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *a): self.s = time.perf_counter() - self.t0


def holdout_workspace(scale, frac, size=128):
    """A workspace whose competition is a holdout (comp.holdout) of the sample at `scale`, with a pre-resized copy
    (decoding 480x640 JPEGs would dominate a CPU run): held-out images are scored offline with solution.csv."""
    from comp import competition, holdout
    from comp.resize import resize
    work = ROOT / 'data' / f'quality-{scale}-{frac:g}'
    comp_dir = work / 'holdout'
    if not (comp_dir / 'solution.csv').exists(): holdout.holdout(comp_dir, frac, seed=42, data=sample(scale, 42))
    work.mkdir(parents=True, exist_ok=True)
    competition.record(competition.load(comp_dir), work)
    resize(size, data=comp_dir, workdir=work)
    return work, comp_dir


def train_fields(text):
    """TrainConfig fields from "k=v,k=v" (values as Python literals where they parse, else strings)."""
    import ast
    def value(v):
        try: return ast.literal_eval(v)
        except (ValueError, SyntaxError): return v
    return {k: value(v) for k, v in (kv.split('=', 1) for kv in text.split(',') if kv)}
