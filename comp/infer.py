"""A submission's ensemble predicted on whatever test set the competition holds now, as a code competition's inference
notebook must (Kaggle re-runs it on a hidden, larger test set): every member's models loaded once; each test image
decoded once for all models and TTA passes that share its item pipeline; a time guard that, when the projected time
exceeds the time there is, drops TTA passes and then the weakest members. Reads runs and never writes to them; reads
no training image. The runs come from a folder (`comp push-runs`'s dataset, or any workspace)."""
import random
import time
from pathlib import Path

from . import bundle, runs, submission
from .config import BETA
from .errors import CompError
from .files import atomic_path, read_json, write_json

OUT_CSV, OUT_PROBS, OUT_RECORD = 'submission.csv', 'predictions.csv', 'submission.json'


def source(name=None, runs_from='.'):
    """(name, record) of what to predict: a submission's record (submissions/NAME.json under `runs_from`), a run or
    CV group as a one-member record, or with no name the default submission of a runs dataset's manifest."""
    from .predict import members
    runs_from = Path(runs_from)
    if name is None:
        m = runs_from / bundle.MANIFEST
        name = read_json(m).get('default') if m.is_file() else None
        if name is None: raise CompError(f'name the submission to predict: {runs_from} has no default one '
                                         '(comp push-runs SUBMISSION makes one)')
    side = runs_from / submission.SUBMISSIONS_DIR / f'{Path(str(name)).stem}.json'
    if side.is_file():
        rec = read_json(side)
        if not rec.get('runs'): raise CompError(f'{side} names no runs: predict a submission from comp predict or comp ensemble')
        return side.stem, rec
    try: run = runs.find(name, runs_from)
    except CompError: raise CompError(f'{runs_from} holds no submission or run {name!r}: push it with '
                                      f'`comp push-runs {name}` and attach the dataset') from None
    return run.name, {'runs': [run.name], **members([run]), 'weights': [1.0], 'tta': 0, 'beta': None,
                      'run_valid_errors': [run.result.get('valid_error')]}


class Model:
    """One trained model of a member (a run, or a CV group's fold or refit), loaded once, with its batch pipeline."""
    def __init__(self, run, comp, items, workdir, uid):
        from .learner import build_learner, no_bars
        c = {**run.config, 'images': None}   # a pre-resized copy stays where the run was trained
        self.run, self.uid, self.key = run, uid, repr((c['size'], c['resize']))
        self.learn = build_learner(c, comp, run, workdir)
        self.learn.load(runs.MODEL, with_opt=False)
        no_bars(self.learn)
        self.dl = self.learn.dls.test_dl(items)
        self.model = self.learn.model.to(self.dl.device).eval()
        self.act = getattr(self.learn.loss_func, 'activation', lambda o: o)   # as get_preds: none for a regression
        self.n_out = len(run.vocab)

    def __call__(self, raw, split_idx, seed=None):
        """Probabilities for a batch of decoded items through this model's batch pipeline: plain (split_idx 1) or
        augmented (0, with its random draws seeded so a pass gives the same result whatever else runs)."""
        import torch
        from fastai.torch_core import to_device
        if seed is not None:
            random.seed(seed)
            torch.manual_seed(seed)
        pipe = self.dl.after_batch
        old, pipe.split_idx = pipe.split_idx, split_idx
        try:
            with torch.no_grad():
                xb = pipe(to_device(raw, self.dl.device))[0]
                return self.act(self.model(xb)).float().cpu()[:, :self.n_out]
        finally:
            pipe.split_idx = old


def _raw_batches(model):
    """The decoded, resized items of `model`'s test DataLoader, batch by batch (its batch pipeline not applied)."""
    from fastcore.basics import noop
    dl = model.dl
    with dl.dataset.set_split_idx(1):
        for b in dl.new(shuffle=False, drop_last=False, after_batch=noop):
            yield tuple(t.cpu() if hasattr(t, 'cpu') else t for t in b)


def _seed(uid, p, batch): return (uid * 1_000_003 + p * 10_007 + batch) % (2 ** 31)


def plan(members, tta, cost, left, fixed_members=False):
    """(tta, kept member indices, notes): the record's TTA passes and members, less what does not fit in `left`
    seconds by `cost(tta, kept)`: TTA passes first, one at a time, then the members with the highest validation
    error (those without one first). `members`: [(name, validation error or None)]. Never fewer than one member."""
    kept, notes, t = list(range(len(members))), [], tta
    while t > 0 and cost(t, kept) > left: t -= 1
    if t < tta: notes.append(f'TTA {tta} -> {t} passes: {tta} would take {cost(tta, kept):.0f}s of {left:.0f}s left')
    order = [i for i in kept if members[i][1] is None] + sorted((i for i in kept if members[i][1] is not None),
                                                                   key=lambda i: -members[i][1])
    while not fixed_members and len(kept) > 1 and cost(t, kept) > left:
        worst = next(i for i in order if i in kept)
        before = cost(t, kept)
        kept.remove(worst)
        err = members[worst][1]
        notes.append(f'dropped {members[worst][0]} (validation error {"unknown" if err is None else f"{err:.4f}"}, '
                     f'the weakest left): {before:.0f}s projected of {left:.0f}s left')
    if cost(t, kept) > left: notes.append(f'even {len(kept)} member(s) without TTA project {cost(t, kept):.0f}s of '
                                          f'{left:.0f}s left: going on, as nothing else can be dropped')
    return t, kept, notes


def _calibrate(models, n_probe=1):
    """(decode seconds per image by item pipeline, (plain, augmented) seconds per image by model uid), measured on the
    first batch of the test set; each model is run once before it is timed (its first call is slower)."""
    import itertools
    decode, cost = {}, {}
    for key, ms in _by_key(models).items():
        t0 = time.perf_counter()
        raw = list(itertools.islice(_raw_batches(ms[0]), n_probe))
        n = sum(len(b[0]) for b in raw)
        decode[key] = (time.perf_counter() - t0) / n
        for m in ms:
            m(raw[0], 1)
            t0 = time.perf_counter()
            for b in raw: m(b, 1)
            t1 = time.perf_counter()
            for b in raw: m(b, 0, seed=0)
            cost[m.uid] = ((t1 - t0) / n, (time.perf_counter() - t1) / n)
    return decode, cost


def _by_key(models):
    out = {}
    for m in models: out.setdefault(m.key, []).append(m)
    return out


def _load(record, runs_from, comp, workdir, echo):
    """[(member name, weight, validation error, [Model])] of the record's members with a weight, loaded once."""
    from .data import test_items
    from .predict import check_complete
    items = test_items(comp)
    errs = record.get('run_valid_errors') or [None] * len(record['runs'])
    out, uid = [], 0
    for name, w, err in zip(record['runs'], record['weights'], errs):
        run = runs.find(name, runs_from)
        check_complete(run)
        parts = [runs.find(p, runs_from) for p in record.get('members', {}).get(name, [])] or run.parts or [run]
        models = []
        for p in parts:
            models.append(Model(p, comp, items, workdir, uid))
            uid += 1
        out.append((name, float(w), err if err is not None else run.result.get('valid_error'), models))
    echo(f'loaded {uid} model(s) of {len(out)} member(s) for {len(items)} test images')
    return out, items


def _cost_fn(members, decode, cost, n):
    def f(t, kept):
        ms = [m for i in kept for m in members[i][3]]
        return n * (sum(decode[k] for k in {m.key for m in ms}) + sum(cost[m.uid][0] + t * cost[m.uid][1] for m in ms))
    return f


def predict(name=None, runs_from='.', comp=None, out='.', time_limit=None, workdir='.', echo=print):
    """Predict the competition's current test set with the submission (or run) `name` from `runs_from`, with its
    members, weights and TTA, within `time_limit` seconds (None: no limit) from this call; write out/submission.csv
    (validated), out/predictions.csv (the probabilities) and out/submission.json (what was used and dropped, and
    why); return that record."""
    import numpy as np
    import pandas as pd
    import torch
    from . import competition
    from .blending import combine
    started = time.time()
    comp = comp or competition.find(workdir=workdir)
    name, record = source(name, runs_from)
    tta, beta = int(record.get('tta') or 0), record.get('beta') if record.get('beta') is not None else BETA
    record = _with_weight(record)
    members, items = _load(record, runs_from, comp, workdir, echo)
    n = len(items)
    fixed = 'stack' in record   # a model fitted on every member's outputs needs them all
    decode, cost = _calibrate([m for mem in members for m in mem[3]])
    cost_of = _cost_fn(members, decode, cost, n)
    left = float('inf') if time_limit is None else time_limit - (time.time() - started)
    t, kept, notes = plan([(m[0], m[2]) for m in members], tta, cost_of, left, fixed_members=fixed)
    for line in notes: echo(line)
    echo(f'predicting {n} images: {len(kept)} member(s), TTA {t}; projected {cost_of(t, kept):.0f}s'
         + ('' if time_limit is None else f' of {left:.0f}s left'))
    models = [m for i in kept for m in members[i][3]]
    plain = {m.uid: [] for m in models}
    aug = {m.uid: [[] for _ in range(t)] for m in models}
    for key, ms in _by_key(models).items():
        for b_i, raw in enumerate(_raw_batches(ms[0])):
            for m in ms:
                plain[m.uid].append(m(raw, 1))
                for p in range(t): aug[m.uid][p].append(m(raw, 0, seed=_seed(m.uid, p, b_i)))
    probs = {}
    for m in models:
        p = torch.cat(plain[m.uid])
        if t: p = torch.lerp(torch.stack([torch.cat(a) for a in aug[m.uid]]).mean(0), p, beta)   # as Learner.tta
        probs[m.uid] = p.numpy()
    member_probs = [np.mean([probs[m.uid] for m in members[i][3]], axis=0) for i in kept]
    used = {**record, 'runs': [members[i][0] for i in kept]}
    if not fixed:
        w = np.array([members[i][1] for i in kept])
        used['weights'] = [float(x) for x in w / w.sum()]
    p = combine(used, member_probs)
    vocab = members[kept[0]][3][0].run.vocab
    df = pd.DataFrame(p, columns=vocab)
    df.insert(0, comp.layout.id_col, list(items[comp.layout.id_col]))
    sub = submission.from_probs(comp, df, vocab, record.get('decode'))
    found = submission.problems(comp, sub)
    if found: raise CompError(f'the submission of {name} would be invalid, nothing written: ' + '; '.join(found))
    out = Path(out)
    for f, frame in ((OUT_PROBS, df), (OUT_CSV, sub)):
        with atomic_path(out / f) as tmp: frame.to_csv(tmp, index=False)
    res = {'source': name, 'competition': comp.name, 'n_images': n, 'method': record.get('method'), 'runs': used['runs'],
           'weights': used.get('weights'),
           'members': {k: v for k, v in (record.get('members') or {}).items() if k in used['runs']},
           'tta': t, 'tta_asked': tta, 'beta': beta if t else None, 'dropped': notes,
           'time_limit_s': time_limit, 'projected_s': cost_of(t, kept), 'elapsed_s': time.time() - started,
           'submission': str(out / OUT_CSV)}
    write_json(out / OUT_RECORD, res)
    echo(f'wrote {out / OUT_CSV} ({n} rows) in {res["elapsed_s"]:.0f}s' + (f'; dropped: {"; ".join(notes)}' if notes else ''))
    return res


def _with_weight(record):
    """The record without its zero-weight members (a greedy selection may weigh some 0): they cost time, add nothing."""
    if 'stack' in record or all(w > 0 for w in record['weights']): return record
    keep = [i for i, w in enumerate(record['weights']) if w > 0]
    errs = record.get('run_valid_errors')
    return {**record, 'runs': [record['runs'][i] for i in keep], 'weights': [record['weights'][i] for i in keep],
            **({'run_valid_errors': [errs[i] for i in keep]} if errs else {})}


def estimate(name=None, n=None, runs_from='.', comp=None, workdir='.', echo=print):
    """The projected seconds to predict `n` test images (default: the test set here) with `name`'s members and TTA on
    this machine, measured on the first batch of the test set here; also with fewer TTA passes."""
    from . import competition
    comp = comp or competition.find(workdir=workdir)
    name, record = source(name, runs_from)
    record = _with_weight(record)
    t0 = time.time()
    members, items = _load(record, runs_from, comp, workdir, echo)
    load_s = time.time() - t0
    n = len(items) if n is None else int(n)
    decode, cost = _calibrate([m for mem in members for m in mem[3]])
    cost_of = _cost_fn(members, decode, cost, n)
    tta, kept = int(record.get('tta') or 0), list(range(len(members)))
    return {'source': name, 'n_images': n, 'load_s': load_s, 'tta': tta,
            'projected_s': {t: cost_of(t, kept) for t in range(tta, -1, -1)},
            'images_per_s': n / cost_of(tta, kept) if cost_of(tta, kept) else None}
