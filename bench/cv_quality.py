"""Holdout error of a single run, of its K-fold CV group, of the group with a refit on every training image, and
of the group retrained with pseudo-labels, over several seeds on one shared split and one set of folds.

Each seed: `comp train` (the shared 80/20 split); `comp cv --folds K`; the same group given `--refit`; then
`comp pseudo` of that group's submission at --threshold, and `comp cv --folds K --refit` on the derived competition.
Every model is scored on the held-out images (solution.csv), which no model trained or validated on.

    python bench/cv_quality.py                   # CPU scale: the demo recipe on the small sample's holdout
    python bench/cv_quality.py --scale full --arch convnext_small --epochs 12 --extra workers=8 --name cv-quality-gpu"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import holdout_parser, holdout_workspace, record, train_fields  # noqa: E402

KINDS = ('single run', 'cv group', 'cv group + refit', 'cv group + refit, pseudo-labels')


def main():
    ap = holdout_parser(__doc__, 'cv-quality-cpu')
    ap.add_argument('--threshold', type=float, default=0.8, help='comp pseudo --threshold')
    a = ap.parse_args()
    from fastai.torch_core import set_seed
    from comp import competition, config, cv, predict, pseudo, submission, train
    work, comp_dir = holdout_workspace(a.scale, a.frac)
    extra = train_fields(a.extra)
    cfg = lambda **kw: config.TrainConfig(arch=a.arch, epochs=a.epochs, **{**extra, **kw})
    errs, runs, secs = {k: [] for k in KINDS}, [], {k: [] for k in KINDS}

    def scored(kind, seed, run, t0, **more):
        out = predict.predict(run, workdir=work)
        err = 1 - submission.score(out['submission'], workdir=work)
        errs[kind].append(err)
        secs[kind].append(time.time() - t0)
        runs.append({'kind': kind, 'seed': seed, 'run': run.name, 'holdout_error': err,
                     'valid_error': run.result.get('valid_error'), **more})
        print(f'{kind} seed {seed}: holdout error {err:.4f} ({secs[kind][-1]:.0f}s)', flush=True)
        return out

    for seed in range(a.seeds):
        set_seed(seed)
        t0 = time.time()
        scored(KINDS[0], seed, train.train(cfg(), workdir=work, quiet=True), t0)
        set_seed(seed)
        t0 = time.time()
        g = cv.cv(cfg(), folds=a.folds, workdir=work, quiet=True, echo=lambda m: None)
        scored(KINDS[1], seed, g, t0)
        g = cv.cv(None, workdir=work, resume=g.name, refit=True, quiet=True, echo=lambda m: None)
        sub = scored(KINDS[2], seed, g, t0)['submission']   # its time: the CV and the refit
        dest = work / f'pseudo-seed{seed}'
        if not (dest / 'pseudo.csv').exists(): pseudo.pseudo(sub, a.threshold, dest, workdir=work)
        n = len(competition.load(dest).pseudo_ids())
        set_seed(seed)
        t0 = time.time()
        gp = cv.cv(cfg(data=str(dest)), folds=a.folds, workdir=work, quiet=True, refit=True, echo=lambda m: None)
        scored(KINDS[3], seed, gp, t0, n_pseudo=n)
        # recorded after every seed, so a bench stopped early keeps the seeds it finished
        rows = [{'kind': k, 'holdout_error_mean': round(statistics.mean(e), 4),
                 'holdout_error_sd': round(statistics.stdev(e), 4) if len(e) > 1 else None, 'seeds': len(e),
                 'errors': [round(x, 4) for x in e], 'seconds_per_seed': round(statistics.mean(secs[k]), 1)}
                for k, e in errs.items()]
        n = competition.load(comp_dir)
        record(a.name, rows, {'arch': a.arch, 'epochs': a.epochs, 'folds': a.folds, 'threshold': a.threshold,
                              'scale': a.scale, 'frac': a.frac, 'extra': extra, 'n_train': len(n.train_df()),
                              'n_holdout': len(n.test_ids()), 'runs': runs})


if __name__ == '__main__':
    main()
