"""What prediction needs of runs, packed as a folder for a Kaggle dataset (`comp push-runs`): each run's weights,
resolved config, vocab and records, a CV group's folds and refit, and the submissions' records (members, weights,
TTA), with a manifest of every file's hash. The inference notebook predicts from it with comp.infer."""
import hashlib
import shutil
from pathlib import Path

from . import runs, submission
from .errors import CompError
from .files import read_json, write_json

MANIFEST = 'comp-runs.json'   # what a runs dataset holds: found by it when attached (comp.kernel.runs_dir)


def run_files(run):
    """A run's files that prediction reads (the rest, such as checkpoints, plots and stored predictions, stay home)."""
    return [run.config_file, run.status_file, run.result_file, run.vocab_file, run.env_file, run.model_file]


def sources(names, workdir='.'):
    """({submission name: its record}, [run names]) that `names` (runs, CV groups, submissions) need, groups with their
    parts; a CompError naming what is neither a run nor a submission."""
    from .predict import check_complete
    subs, names_out = {}, []
    folder = Path(workdir) / submission.SUBMISSIONS_DIR
    for n in names:
        p = Path(n)
        side = submission.sidecar_path(p) if p.suffix == '.csv' else folder / f'{p.name}.json'
        if side.is_file():
            rec = read_json(side)
            if not rec.get('runs'): raise CompError(f'{side} names no runs: only submissions from comp predict or comp ensemble can be pushed')
            subs[side.stem] = rec
            wanted = rec['runs']
        else:
            try: run = runs.find(n, workdir)
            except CompError: raise CompError(f'{n!r} is neither a run nor a submission here: give a name from '
                                              '`comp runs` or a file in submissions/') from None
            wanted = [run.name]
        for r in wanted:
            run = runs.find(r, workdir)
            check_complete(run)
            for x in [run, *run.parts]:
                if x.name not in names_out: names_out.append(x.name)
    return subs, names_out


def pack(names, dest, workdir='.', keep=None):
    """Write into the empty folder `dest` what prediction needs of `names` (and of `keep`, a manifest of an earlier
    pack whose runs and submissions stay in); return the manifest."""
    subs, run_names = sources(names, workdir)
    if keep:
        for r in keep.get('runs', {}):
            if r not in run_names and runs.Run(Path(workdir) / runs.RUNS_DIR / r).config_file.exists(): run_names.append(r)
        for s, rec in keep.get('submissions', {}).items(): subs.setdefault(s, rec)
    dest = Path(dest)
    manifest = {'runs': {}, 'submissions': subs, 'default': next(reversed(subs), None) if subs else None}
    for r in run_names:
        out = dest / runs.RUNS_DIR / r
        out.mkdir(parents=True, exist_ok=True)
        manifest['runs'][r] = {}
        for f in run_files(runs.find(r, workdir)):
            if f.is_file():
                shutil.copyfile(f, out / f.name)
                manifest['runs'][r][f.name] = _sha(out / f.name)
    for s, rec in subs.items(): write_json(dest / submission.SUBMISSIONS_DIR / f'{s}.json', rec)
    write_json(dest / MANIFEST, manifest)
    return manifest


def same(a, b):
    """Whether two manifests hold the same files and submissions (a push of `b` over `a` would change nothing)."""
    strip = lambda m: (m.get('runs'), {k: {x: y for x, y in v.items() if x != 'kaggle'} for k, v in (m.get('submissions') or {}).items()})
    return a is not None and strip(a) == strip(b)


def _sha(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''): h.update(block)
    return h.hexdigest()
