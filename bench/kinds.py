"""Holdout score of every kind of competition comp handles (the nine `comp sample --like` layouts), decoded the
metric-aware way and the naive way, for a single run, a K-fold CV group and a two-run ensemble, over several seeds.

Per kind: the small sample (one fixed sample seed; its archives unpacked as `comp setup` does) is described with its
competition's metric and recorded in a fresh workspace under bench/data/kinds-work (Paddy's 480x640 JPEGs pre-resized). Per training seed (TrainConfig.seed: the shared split and the folds; fastai's set_seed for training):
  - a single run (a) and a second single run (b, another learning rate, same split);
  - a K-fold CV group of (a)'s config;
  - the ensemble of (a) and (b): weights searched on the metric (`search_weights=True`) and equal weights.
Every model is scored on the sample's hidden solution.csv, which no model trained or validated on, twice from the same
stored test probabilities:
  - metric-aware: what comp does (`comp predict` / `comp ensemble`): a multi-label threshold or ordinal cut points
    chosen on the validation (or out-of-fold) predictions, then `comp score`;
  - naive: decoded with no parameters (argmax; threshold 0.5; rounding of the regressed grade).
Accuracy (argmax either way), metrics computed on probabilities (log loss, AUC) and RMSE have nothing to decode: there the two
are equal by construction. A constant model (the training labels' prior) is scored too, as the floor to beat.

    python bench/kinds.py          # every kind, 3 seeds, 5 folds: about 33 minutes on a shared 2-core CPU
    python bench/kinds.py --kinds aptos2019-blindness-detection --seeds 1 --folds 2 --name kinds-trial"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, kind_competition, kind_workspace, kinds_args, kinds_config, kinds_parser, ms,  # noqa: E402
                    record, short, stats, train_fields)

SETTINGS = ('single', 'group', 'ens_searched', 'ens_equal')


def main():
    ap = kinds_parser(__doc__, 'kinds-cpu', epochs=8, folds=5)
    ap.add_argument('--lr', type=float, default=0.01, help='the single run and the CV group')
    ap.add_argument('--lr2', type=float, default=0.003, help="the ensemble's second run")
    a = kinds_args(ap)
    import numpy as np
    import pandas as pd
    from fastai.torch_core import set_seed
    from comp import competition, cv, ensemble, metrics, predict, submission, train
    extra = train_fields(a.extra)
    cfg = lambda seed, **kw: kinds_config(a, seed, **{'lr': a.lr, **kw})
    runs, summary, t_all = [], {}, time.time()
    out_rows = []

    for name in a.kinds:
        t_kind = time.time()
        comp = kind_competition(name, a.scale, a.sample_seed)
        metric = comp.metric
        work = kind_workspace(comp, ROOT / 'data' / 'kinds-work' / name)
        L = comp.layout
        higher = metrics.higher(metric)
        sol = submission.read(comp.solution_path)
        vocab = comp.vocab()
        naive_score = lambda test, vocab=vocab: metrics.score_frames(
            metric, L.submission, sol, submission.from_probs(comp, test, vocab, {}), L.id_col,
            positive=comp._positive(vocab))

        # The floor: a constant model that outputs the training labels' prior for every test image.
        df = comp.train_df()
        if comp.task in ('regression', 'ordinal'): prior = [df[competition.LABEL].astype(float).mean()]
        else:
            hot = np.array([[c in set(str(v).split()) if comp.task == 'multi' else c == v for c in vocab]
                            for v in df[competition.LABEL]], float)
            prior = list(hot.mean(0))
        ids = comp.test_ids()
        const = pd.DataFrame([prior] * len(ids), columns=vocab)
        const.insert(0, L.id_col, ids)
        constant = naive_score(const)
        print(f'== {name}: {metric} ({"higher" if higher else "lower"} is better), task {comp.task}, submission '
              f'{L.submission}, {len(df)} train / {len(ids)} holdout images; constant prior {constant:.4f}', flush=True)

        scores = {s: {'aware': [], 'naive': []} for s in SETTINGS}
        for seed in range(a.seeds):
            t0 = time.time()
            set_seed(seed)
            ra = train.train(cfg(seed), workdir=work, quiet=True)
            set_seed(seed)
            rb = train.train(cfg(seed, lr=a.lr2), workdir=work, quiet=True)
            t_single = time.time() - t0
            t0 = time.time()
            set_seed(seed)
            g = cv.cv(cfg(seed), folds=a.folds, workdir=work, quiet=True, echo=lambda m: None)
            t_group = time.time() - t0
            got = {}
            for setting, run in (('single', ra), ('group', g)):
                rec = predict.predict(run, workdir=work)
                aware = submission.score(rec['submission'], workdir=work)
                test, _ = predict.predictions(run, workdir=work)
                got[setting] = {'aware': aware, 'naive': naive_score(test, run.vocab), 'decode': rec.get('decode'),
                                'run': run.name, 'valid_error': run.result.get('valid_error')}
            got['single_b'] = {'run': rb.name, 'valid_error': rb.result.get('valid_error'),
                               'aware': submission.score(predict.predict(rb, workdir=work)['submission'], workdir=work)}
            tests = [predict.predictions(r, workdir=work)[0].set_index(L.id_col)[vocab].sort_index() for r in (ra, rb)]
            for setting, search in (('ens_searched', True), ('ens_equal', False)):
                rec = ensemble.ensemble([ra.name, rb.name], search_weights=search, workdir=work)
                blend = sum(w * t for w, t in zip(rec['weights'], tests)).reset_index()
                got[setting] = {'aware': submission.score(rec['submission'], workdir=work),
                                'naive': naive_score(blend), 'weights': rec['weights'], 'decode': rec.get('decode'),
                                'valid_error': rec.get('valid_error'), 'equal_weights_valid_error': rec.get('equal_weights_error')}
            for s in SETTINGS:
                for k in ('aware', 'naive'): scores[s][k].append(got[s][k])
            runs.append({'kind': name, 'metric': metric, 'seed': seed, 'seconds_single_pair': round(t_single, 1),
                         'seconds_group': round(t_group, 1), **got})
            print(f'  seed {seed}: ' + '  '.join(f'{s} {got[s]["aware"]:.4f}/{got[s]["naive"]:.4f}' for s in SETTINGS)
                  + f'  (b {got["single_b"]["aware"]:.4f}; {t_single:.0f}s + {t_group:.0f}s)', flush=True)

        diff = lambda s: [x - y for x, y in zip(scores[s]['aware'], scores[s]['naive'])]
        summary[name] = {'metric': metric, 'higher_is_better': higher, 'task': comp.task, 'submission': L.submission,
                         'n_train': len(df), 'n_holdout': len(ids), 'constant_prior': round(constant, 5),
                         'seconds': round(time.time() - t_kind, 1),
                         **{s: {'aware': stats(scores[s]['aware']), 'naive': stats(scores[s]['naive']),
                                'aware_minus_naive': stats(diff(s))} for s in SETTINGS},
                         'searched_minus_equal': stats([x - y for x, y in zip(scores['ens_searched']['aware'],
                                                                             scores['ens_equal']['aware'])])}
        out_rows.append({
            'kind': short(name),
            'metric': f'{metric} ({"↑" if higher else "↓"})', 'constant': f'{constant:.4f}',
            'single aware': ms(scores['single']['aware']), 'single naive': ms(scores['single']['naive']),
            'single diff': ms(diff('single')),
            'group aware': ms(scores['group']['aware']), 'group naive': ms(scores['group']['naive']),
            'group diff': ms(diff('group')),
            'ens searched': ms(scores['ens_searched']['aware']), 'ens equal': ms(scores['ens_equal']['aware']),
            'searched-equal': ms(summary[name]['searched_minus_equal']['values']),
        })
        # recorded after every kind, so a bench stopped early keeps the kinds it finished
        record(a.name, out_rows, {'arch': a.arch, 'size': a.size, 'epochs': a.epochs, 'lr': a.lr, 'lr2': a.lr2,
                                  'folds': a.folds, 'seeds': a.seeds, 'scale': a.scale, 'sample_seed': a.sample_seed,
                                  'extra': extra, 'threads': a.threads, 'wall_seconds': round(time.time() - t_all, 1),
                                  'summary': summary, 'runs': runs})


if __name__ == '__main__':
    main()
