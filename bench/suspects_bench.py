"""How well `comp suspects` finds labels flipped on purpose, and what `--drop` of them does to the holdout error.

Each seed and flip fraction: a copy of the small sample's holdout with that fraction of the training labels moved to
another label at random (comp.suspects.flip, stratified by label); `comp cv --folds K` on it; `comp suspects` of the
group; precision and recall of cleanlab's flagged set against the flipped images (the base rate, the precision of
flagging at random, is the fraction flipped); then one run on the shared split without and one with
`--drop suspects.csv`, both scored on the held-out images (solution.csv, true labels, never trained or validated on).

    python bench/suspects_bench.py                       # CPU: the demo recipe, 10 epochs, 5 folds, 3 seeds
    python bench/suspects_bench.py --scale full --arch convnext_small --epochs 12 --extra workers=8 --name suspects-gpu"""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, holdout_parser, holdout_workspace, record, train_fields  # noqa: E402


def main():
    ap = holdout_parser(__doc__, 'suspects-cpu', epochs=10)
    ap.add_argument('--fracs', default='0.05,0.15', help='fractions of the training labels flipped')
    a = ap.parse_args()
    from fastai.torch_core import set_seed
    from comp import competition, config, cv, predict, submission, train
    from comp.resize import resize
    from comp.suspects import flip, suspects
    _, holdout = holdout_workspace(a.scale, a.frac)
    extra = train_fields(a.extra)
    fracs = [float(f) for f in a.fracs.split(',')]
    cfg = lambda **kw: config.TrainConfig(arch=a.arch, epochs=a.epochs, **{**extra, **kw})
    rows, t_start = [], time.time()

    def holdout_error(run, ws):
        return 1 - submission.score(predict.predict(run, workdir=ws)['submission'], workdir=ws)

    for seed in range(a.seeds):
        for frac in fracs:
            ws = ROOT / 'data' / f'suspects-{a.scale}-{a.frac:g}-flip{frac:g}-seed{seed}'
            data = ws / 'data'
            if not (data / 'train.csv').exists():
                ws.mkdir(parents=True, exist_ok=True)
                flip(holdout, data, frac, seed).to_csv(ws / 'flipped.csv', index=False)
            import pandas as pd
            comp = competition.load(data)
            competition.record(comp, ws)
            resize(128, data=data, workdir=ws)
            id_col = comp.layout.id_col
            flipped = set(pd.read_csv(ws / 'flipped.csv', dtype=str)[id_col])
            t0 = time.time()
            set_seed(seed)
            g = cv.cv(cfg(), folds=a.folds, workdir=ws, quiet=True, echo=lambda m: None)
            sus = suspects(g, workdir=ws)
            flagged = set(sus[id_col])
            hit = len(flagged & flipped)
            cv_s = time.time() - t0
            set_seed(seed)
            plain = train.train(cfg(), workdir=ws, quiet=True)
            set_seed(seed)
            dropped = train.train(cfg(drop=str(g.path / 'suspects.csv')), workdir=ws, quiet=True)
            row = {'frac': frac, 'seed': seed, 'n_train': len(comp.train_df()), 'n_flipped': len(flipped),
                   'n_flagged': len(flagged), 'precision': round(hit / len(flagged), 4) if flagged else None,
                   'recall': round(hit / len(flipped), 4), 'cv_error': round(g.result['valid_error'], 4),
                   'holdout_error': round(holdout_error(plain, ws), 4),
                   'holdout_error_drop': round(holdout_error(dropped, ws), 4),
                   'dropped': dropped.result['dropped'], 'group': g.name, 'run': plain.name, 'run_drop': dropped.name,
                   'seconds': round(time.time() - t0, 1), 'cv_seconds': round(cv_s, 1)}
            rows.append(row)
            print(row, flush=True)
            summary = []
            for f in fracs:
                rs = [r for r in rows if r['frac'] == f]
                if not rs: continue
                ms = lambda k: _ms([r[k] for r in rs if r[k] is not None])
                summary.append({'frac flipped': f, 'seeds': len(rs), 'precision': ms('precision'), 'recall': ms('recall'),
                                'flagged': ms('n_flagged'), 'holdout error': ms('holdout_error'),
                                'holdout error --drop': ms('holdout_error_drop')})
            # recorded after every group, so a bench stopped early keeps what it finished
            record(a.name, summary, {'arch': a.arch, 'epochs': a.epochs, 'folds': a.folds, 'scale': a.scale,
                                     'holdout_frac': a.frac, 'extra': extra, 'n_holdout': len(comp.test_ids()),
                                     'elapsed_s': round(time.time() - t_start), 'runs': rows})


def _ms(xs):
    """'mean ± sd' of a list (sd over seeds; none for one seed)."""
    if not xs: return None
    m = statistics.mean(xs)
    return f'{m:.3f} ± {statistics.stdev(xs):.3f}' if len(xs) > 1 else f'{m:.3f}'


if __name__ == '__main__':
    main()
