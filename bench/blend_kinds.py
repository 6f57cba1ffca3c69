"""Holdout score of the ensemble methods (`comp ensemble --method average|search|greedy|stack`) and of distillation
(`comp distill`) on every kind of competition comp handles (the nine `comp sample --like` layouts), over several seeds:
bench/ensemble_methods.py and bench/distill_bench.py measure them on the Paddy holdout only.

Per kind, the small sample (as bench/kinds.py writes it, with its hidden solution.csv and its competition's metric);
per training seed, a fresh workspace (comp cv reuses the fold runs of an identical config within one workspace):
  - three K-fold CV groups of the demo recipe from scratch, differing by their learning rate (0.01, 0.003, 0.03, as
    ensemble_methods.py's members); the best member is the group of lowest validation (out-of-fold) error;
  - the three combined by each method, learning from their out-of-fold predictions (stack refuses multi-label kinds);
  - distillation where it applies (one label per image): teacher = the `average` ensemble's submission; a plain single
    run of the recipe (lr 0.01), the same run as a student of the teacher (`teacher=`), and, where this comp has
    `TrainConfig.distill_test`, a student that also trains on the test images with the teacher's test probabilities.
Every submission is scored with the competition's metric on the held-out solution.csv, which no model or method saw;
the table gives mean ± sd over the seeds, the JSON each seed's scores and the paired gains (positive: better) of every
method over `average` and of each student over the plain run.

    python bench/blend_kinds.py      # CPU: 9 kinds, 3 seeds, 3 folds, 8 epochs: about 50 minutes on a shared 2-core CPU
    python bench/blend_kinds.py --scale full --arch convnext_small --size 224 --epochs 12 --folds 5 \\
        --extra workers=8 --threads 8 --name blend-kinds-gpu

On a CPU shared with other jobs, run it with OMP_NUM_THREADS=1 (see bench/quality.py)."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ROOT, distill_options, kind_competition, kind_workspace, kinds_args, kinds_config,  # noqa: E402
                    kinds_parser, ms, record, short, stats, train_fields)
from comp.ensemble import METHODS  # noqa: E402

LRS = (0.01, 0.003, 0.03)   # the members: the demo recipe's rate, a lower and a higher one (equal cost)
DISTILL = ('plain', 'student', 'student+test')
COLUMNS = ('best member',) + METHODS + ('teacher',) + DISTILL


def one_seed(a, comp, ws, seed, with_test):
    """{column: its record, with its holdout 'score' where it has one} of training seed `seed` in workspace `ws`."""
    from fastai.torch_core import set_seed
    from comp import cv, ensemble, predict, submission, train
    from comp.errors import CompError, ConfigError
    cfg = lambda **kw: kinds_config(a, seed, **kw)
    score = lambda sub: submission.score(sub, workdir=ws)
    t0 = time.time()
    groups = []
    for lr in LRS:
        set_seed(seed)
        groups.append(cv.cv(cfg(lr=lr), folds=a.folds, workdir=ws, quiet=True, echo=lambda _: None))
    members = [{'lr': lr, 'group': g.name, 'valid_error': g.result['valid_error'],
                'score': score(predict.predict(g, workdir=ws)['submission'])} for lr, g in zip(LRS, groups)]
    best = min(members, key=lambda m: m['valid_error'])   # chosen as one would: on validation
    got = {'members': members, 'best member': {'score': best['score'], 'lr': best['lr']},
           'seconds_groups': round(time.time() - t0, 1)}
    for method in METHODS:
        t0 = time.time()
        try: out = ensemble.ensemble([g.name for g in groups], method=method, name=method, workdir=ws)
        except CompError as e:   # stack: single-label, regression and ordinal kinds only
            got[method] = {'refused': str(e)}
            continue
        got[method] = {'score': score(out['submission']), 'submission': Path(out['submission']).stem,
                       'valid_error': out.get('valid_error'), 'weights': out['weights'],
                       'seconds': round(time.time() - t0, 2),
                       **{k: out[k] for k in ('selection', 'equal_weights_error', 'decode') if k in out}}
    t0 = time.time()
    teacher = {'teacher': got['average']['submission'], 'distill_t': a.t, 'distill_alpha': a.alpha}
    # the student first: where distillation does not apply it is refused before training, and the rest is skipped
    for variant, kw in (('student', teacher), ('plain', {}), ('student+test', {**teacher, 'distill_test': True})):
        if variant == 'student+test' and not with_test: break
        set_seed(seed)
        try: run = train.train(cfg(lr=LRS[0], **kw), workdir=ws, quiet=True)
        except ConfigError as e:   # comp.distill.check: one label per image (--target disease) only
            got[variant] = {'n/a': str(e)}
            if variant == 'student': break
            continue
        got[variant] = {'score': score(predict.predict(run, workdir=ws)['submission']), 'run': run.name,
                        'valid_error': run.result.get('valid_error'),
                        'teacher_images': run.config.get('teacher_images')}
    if 'score' in got.get('student', {}): got['teacher'] = got['average']
    got['seconds_distill'] = round(time.time() - t0, 1)
    return got


def main():
    a = kinds_args(distill_options(kinds_parser(__doc__, 'blend-kinds-cpu', epochs=8, folds=3)))
    from comp import config, metrics
    with_test = 'distill_test' in config.TrainConfig.__dataclass_fields__
    rows, summary, details, t_all = [], {}, [], time.time()
    for name in a.kinds:
        t_kind = time.time()
        comp = kind_competition(name, a.scale, a.sample_seed)
        higher = metrics.higher(comp.metric)
        print(f'== {name}: {comp.metric} ({"higher" if higher else "lower"} is better), task {comp.task}, '
              f'{len(comp.train_df())} train / {len(comp.test_ids())} holdout images', flush=True)
        scores, refused, first = {c: [] for c in COLUMNS}, {}, None
        for seed in range(a.seeds):
            # a workspace per seed: comp cv would find the fold runs of seed 0's configs again (the split is the seed's)
            ws = kind_workspace(comp, ROOT / 'data' / 'blend-kinds-work' / name / f'seed{seed}', resized=first)
            first = first or ws
            got = one_seed(a, comp, ws, seed, with_test)
            for c in COLUMNS:
                if 'score' in got.get(c, {}): scores[c].append(got[c]['score'])
                elif c in got: refused[c] = got[c]
            details.append({'kind': name, 'seed': seed, **got})
            print(f'  seed {seed}: ' + '  '.join(f'{c} {got[c]["score"]:.4f}' for c in COLUMNS if c in scores and
                                                 'score' in got.get(c, {}))
                  + f'  ({got["seconds_groups"]:.0f}s groups, {got["seconds_distill"]:.0f}s distillation)', flush=True)

        def paired(c, ref):   # per seed, c's gain over ref (positive: better)
            return stats([x - y if higher else y - x for x, y in zip(scores[c], scores[ref])]) if scores[c] else None

        def cell(c):
            if scores[c]: return ms(scores[c])
            if c == 'student+test' and not with_test: return 'absent'   # a comp without TrainConfig.distill_test
            return next(iter(refused[c])) if c in refused else 'n/a'   # 'refused' (stack), 'n/a' (distillation)

        summary[name] = {'metric': comp.metric, 'higher_is_better': higher, 'task': comp.task,
                         'n_train': len(comp.train_df()), 'n_holdout': len(comp.test_ids()),
                         'seconds': round(time.time() - t_kind, 1), 'refused': refused,
                         **{c: stats(scores[c]) for c in COLUMNS},
                         'gain_over_average': {c: paired(c, 'average') for c in ('best member',) + METHODS[1:]},
                         'gain_over_plain': {c: paired(c, 'plain') for c in DISTILL[1:]},
                         'test_images_gain_over_student': paired('student+test', 'student')}
        rows.append({'kind': short(name), 'metric': f'{comp.metric} ({"↑" if higher else "↓"})',
                     **{c: cell(c) for c in COLUMNS}})
        # recorded after every kind, so a bench stopped early keeps the kinds it finished
        record(a.name, rows, {'arch': a.arch, 'size': a.size, 'epochs': a.epochs, 'folds': a.folds, 'seeds': a.seeds,
                              'lrs': LRS, 't': a.t, 'alpha': a.alpha, 'scale': a.scale, 'sample_seed': a.sample_seed,
                              'extra': train_fields(a.extra), 'threads': a.threads, 'distill_test': with_test,
                              'wall_seconds': round(time.time() - t_all, 1), 'summary': summary, 'details': details})


if __name__ == '__main__':
    main()
