"""Holdout error of one set of ensemble members combined by each `comp ensemble --method`: average (equal weights),
search (coordinate-searched weights), greedy (Caruana's selection), stack (logistic regression on their outputs),
over several seeds.

Each seed: three CV groups (`comp cv --folds K`, the split and folds of that seed) of the demo recipe, made different
by their learning rate; every method combines the same three groups, learning from their out-of-fold
predictions; each submission is scored on the held-out images (solution.csv), which no model or method saw.

    python bench/ensemble_methods.py                  # CPU scale: the small sample's holdout, 3 folds, 12 epochs (README: --epochs 15)
    python bench/ensemble_methods.py --scale full --arch convnext_small --epochs 12 --folds 5 --extra workers=8 --name ensemble-methods-gpu

On a CPU shared with other jobs, run it with OMP_NUM_THREADS=1 (see bench/quality.py): 12 epochs rather than the
demo's 15, and 3 folds, keep it near 20 minutes on two loaded cores."""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import holdout_parser, holdout_workspace, record, train_fields  # noqa: E402

METHODS = ('average', 'search', 'greedy', 'stack')
MEMBERS = ({}, {'lr': 0.003}, {'lr': 0.03})   # the demo recipe (lr 0.01), a lower and a higher rate: equal cost


def main():
    ap = holdout_parser(__doc__, 'ensemble-methods-cpu', epochs=12, folds=3)
    a = ap.parse_args()
    from fastai.torch_core import set_seed
    from comp import competition, config, cv, ensemble, predict, submission
    work, comp_dir = holdout_workspace(a.scale, a.frac)
    extra = train_fields(a.extra)
    kinds = ('best member',) + METHODS
    hold, valid, rows_out = {k: [] for k in kinds}, {k: [] for k in kinds}, []
    holdout_error = lambda sub: 1 - submission.score(sub, workdir=work)
    for seed in range(a.seeds):
        t0 = time.time()
        groups = []
        for m in MEMBERS:
            set_seed(seed)
            cfg = config.TrainConfig(arch=a.arch, epochs=a.epochs, seed=seed, **{**extra, **m})
            groups.append(cv.cv(cfg, folds=a.folds, workdir=work, quiet=True, echo=lambda _: None))
        train_s = time.time() - t0
        members = [{'group': g.name, 'changes': m, 'valid_error': g.result['valid_error'],
                    'holdout_error': holdout_error(predict.predict(g, workdir=work)['submission'])} for g, m in zip(groups, MEMBERS)]
        best = min(members, key=lambda r: r['valid_error'])   # chosen as one would: on validation
        hold['best member'].append(best['holdout_error'])
        valid['best member'].append(best['valid_error'])
        row = {'seed': seed, 'members': members, 'train_s': round(train_s, 1)}
        for method in METHODS:
            t1 = time.time()
            out = ensemble.ensemble([g.name for g in groups], method=method, name=f'seed{seed}-{method}', workdir=work)
            e = holdout_error(out['submission'])
            hold[method].append(e)
            valid[method].append(out['valid_error'])
            row[method] = {'holdout_error': e, 'valid_error': out['valid_error'], 'weights': out['weights'],
                           'seconds': round(time.time() - t1, 2),
                           **{k: out[k] for k in ('selection', 'equal_weights_error') if k in out}}
            print(f'seed {seed} {method}: holdout error {e:.4f}, validation error {out["valid_error"]:.4f}', flush=True)
        rows_out.append(row)
        sd = lambda v: round(statistics.stdev(v), 4) if len(v) > 1 else None
        # recorded after every seed, so a bench stopped early keeps the seeds it finished
        rows = [{'method': k, 'holdout_error_mean': round(statistics.mean(hold[k]), 4), 'holdout_error_sd': sd(hold[k]),
                 'valid_error_mean': round(statistics.mean(valid[k]), 4), 'valid_error_sd': sd(valid[k]),
                 'seeds': len(hold[k]), 'holdout_errors': [round(x, 4) for x in hold[k]]} for k in kinds]
        n = competition.load(comp_dir)
        record(a.name, rows, {'arch': a.arch, 'members': MEMBERS, 'epochs': a.epochs, 'folds': a.folds, 'scale': a.scale,
                              'frac': a.frac, 'extra': extra, 'n_train': len(n.train_df()), 'n_holdout': len(n.test_ids()),
                              'per_seed': rows_out})


if __name__ == '__main__':
    main()
