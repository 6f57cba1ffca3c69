"""Shared benchmark helpers: the full-scale sample competition, timing, and the results record."""
import json
import os
import platform
import shutil
import statistics
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


def runs_parser(doc, name, epochs, folds, extra='workers=0'):
    """`parser` with the options of the benchmarks that train the demo recipe over several seeds on the small sample:
    --arch, --epochs, --seeds, --folds, --extra and the results' --name."""
    ap = parser(doc)
    ap.set_defaults(scale='small')
    ap.add_argument('--arch', default='demo', help='the demo recipe: resnet10t, from scratch')
    ap.add_argument('--epochs', type=int, default=epochs)
    ap.add_argument('--seeds', type=int, default=3, help='training seeds 0..N-1')
    ap.add_argument('--folds', type=int, default=folds)
    ap.add_argument('--extra', default=extra, help='more TrainConfig fields for every run, e.g. "size=64,bs=32"')
    ap.add_argument('--name', default=name)
    return ap


def holdout_parser(doc, name, epochs=15, folds=5):
    """`runs_parser` for the benchmarks scored on a holdout of the Paddy sample, with its --frac."""
    ap = runs_parser(doc, name, epochs, folds)
    ap.add_argument('--frac', type=float, default=0.25, help="held-out fraction of the sample's training images")
    return ap


def kinds_parser(doc, name, epochs=8, folds=5):
    """`runs_parser` for the benchmarks over the nine kinds of competition (`kind_competition`): --kinds,
    --sample-seed, --size and --threads."""
    ap = runs_parser(doc, name, epochs, folds, extra='workers=0,bs=16')
    ap.add_argument('--kinds', nargs='*', default=list(METRIC), help='competition names (default: all nine)')
    ap.add_argument('--sample-seed', type=int, default=7, help='seed of the written samples')
    ap.add_argument('--size', default='48')
    ap.add_argument('--threads', type=int, default=1, help='torch threads (the CPU bench shares 2 cores)')
    return ap


def kinds_args(ap):
    """The parsed options of a `kinds_parser`, torch's threads set to --threads."""
    a = ap.parse_args()
    import torch
    torch.set_num_threads(a.threads)
    return a


def distill_options(ap):
    """Add distillation's --t and --alpha (TrainConfig.distill_t, distill_alpha) to a parser."""
    ap.add_argument('--t', type=float, default=2.0, help='distillation temperature')
    ap.add_argument('--alpha', type=float, default=0.5, help="weight of the teacher's soft targets")
    return ap


def kinds_config(a, seed, **kw):
    """The TrainConfig of a kinds benchmark's run: the recipe from scratch at --size, --epochs, --extra, then `kw`."""
    from comp import config
    return config.TrainConfig(**{'arch': a.arch, 'size': a.size, 'epochs': a.epochs, 'seed': seed, 'pretrained': False,
                                 **train_fields(a.extra), **kw})


# Each kind's metric key (../shared/COMPETITIONS.md), as `comp setup` records it from Kaggle's API.
METRIC = {
    'paddy-disease-classification': 'accuracy',
    'cassava-leaf-disease-classification': 'accuracy',
    'dog-breed-identification': 'log_loss',
    'dogs-vs-cats-redux-kernels-edition': 'log_loss',
    'aerial-cactus-identification': 'auc',
    'plant-pathology-2020-fgvc7': 'mean_auc',
    'plant-pathology-2021-fgvc8': 'f1_micro',
    'aptos2019-blindness-detection': 'qwk',
    'petfinder-pawpularity-score': 'rmse',
}


def short(name):
    """A kind's short name for tables: its first word, and the year of the two plant-pathology ones."""
    return name.split('-')[0] + ('-2021' if '2021' in name else '-2020' if '2020' in name else '')


def kind_competition(name, scale='small', seed=7):
    """The sample of kind `name` (`comp sample --like NAME`, with its hidden solution.csv), written once under
    bench/data/kinds, its archives unpacked as `comp setup` does, described with its competition's metric."""
    from comp import competition, kaggle
    from comp.sample import write_sample
    src = ROOT / 'data' / 'kinds' / f'{name}-{scale}-{seed}'
    if not (src / 'solution.csv').exists():
        if src.exists(): shutil.rmtree(src)
        write_sample(src, scale=scale, seed=seed, like=name)
    kaggle.unpack(src)   # aerial cactus ships its images in zips only
    return competition.describe(src, name=name, metric=METRIC[name])


def kind_workspace(comp, work, resized=None):
    """A fresh workspace `work` of `comp` (every run of a bench trains anew); a folder-layout kind (Paddy's 480x640
    JPEGs) gets a 128 px copy, big enough for the demo recipe's squish to 96, or a link to workspace `resized`'s."""
    from comp import competition
    from comp.resize import RESIZED_DIR, resize
    work = Path(work)
    if work.exists(): shutil.rmtree(work)
    work.mkdir(parents=True)
    competition.record(comp, work)
    if comp.layout.images == 'folders':
        if resized: (work / RESIZED_DIR).symlink_to(Path(resized).resolve() / RESIZED_DIR)
        else: resize(128, data=comp.path, workdir=work)
    return work


def ms(xs, nd=4):
    """'mean ± sd' of a list (sd over the seeds; '-' when there is one)."""
    if not xs: return '-'
    m = statistics.mean(xs)
    return f'{m:.{nd}f} ± {statistics.stdev(xs):.{nd}f}' if len(xs) > 1 else f'{m:.{nd}f}'


def stats(xs):
    """Mean, sd and the values of a list, for the results' JSON (None when empty)."""
    return {'mean': round(statistics.mean(xs), 5), 'sd': round(statistics.stdev(xs), 5) if len(xs) > 1 else None,
            'values': [round(x, 5) for x in xs]} if xs else None


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
