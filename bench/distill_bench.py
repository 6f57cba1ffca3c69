"""Holdout error of a K-fold CV group (the teacher), of a single run of the same recipe trained plainly, and of the
same single run distilled from the group (`comp distill GROUP`: soft targets from its out-of-fold probabilities), and
of that student also trained on the holdout's test images with the group's test probabilities (--distill-test), over
several seeds on one shared split; and each one's prediction speed on the holdout's test images (comp.infer: the
teacher runs its K fold models, the student one).

    python bench/distill_bench.py                  # CPU scale: the demo recipe on the small sample's holdout
    python bench/distill_bench.py --scale full --arch convnext_small --epochs 12 --extra workers=8 --name distill-gpu"""
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import distill_options, holdout_parser, holdout_workspace, record, train_fields  # noqa: E402

KINDS = ('teacher: cv group', 'plain single run', 'student: single run distilled from the group',
         'student + test images: also the group\'s test probabilities (--distill-test)')


def main():
    a = distill_options(holdout_parser(__doc__, 'distill-cpu')).parse_args()
    from fastai.torch_core import set_seed
    from comp import competition, config, cv, infer, predict, submission, train
    from comp.resize import RESIZED_DIR
    work, comp_dir = holdout_workspace(a.scale, a.frac)
    extra = train_fields(a.extra)
    cfg = lambda **kw: config.TrainConfig(arch=a.arch, epochs=a.epochs, **{**extra, **kw})
    errs, speed, runs = {k: [] for k in KINDS}, {k: [] for k in KINDS}, []

    def scored(kind, seed, run, ws):
        out = predict.predict(run, workdir=ws)
        err = 1 - submission.score(out['submission'], workdir=ws)
        with tempfile.TemporaryDirectory() as tmp:
            rec = infer.predict(run.name, runs_from=ws, out=tmp, workdir=ws, echo=lambda m: None)
        errs[kind].append(err)
        speed[kind].append(rec['n_images'] / rec['elapsed_s'])
        runs.append({'kind': kind, 'seed': seed, 'run': run.name, 'holdout_error': err,
                     'valid_error': run.result.get('valid_error'), 'predict_images_per_s': round(speed[kind][-1], 1)})
        print(f'{kind} seed {seed}: holdout error {err:.4f}, {speed[kind][-1]:.1f} images/s at prediction', flush=True)

    for seed in range(a.seeds):
        t0 = time.time()
        # A workspace per seed: comp cv finds fold runs trained before with the same config (the split's seed is the
        # config's), so in one workspace every seed would reuse the first seed's teacher.
        ws = work / f'distill-seed{seed}'
        ws.mkdir(exist_ok=True)
        competition.record(competition.load(comp_dir), ws)
        if not (ws / RESIZED_DIR).exists(): (ws / RESIZED_DIR).symlink_to(work / RESIZED_DIR)   # the shared 128 px copy
        set_seed(seed)
        group = cv.cv(cfg(), folds=a.folds, workdir=ws, quiet=True, echo=lambda m: None)
        scored(KINDS[0], seed, group, ws)
        set_seed(seed)
        scored(KINDS[1], seed, train.train(cfg(), workdir=ws, quiet=True), ws)
        set_seed(seed)
        scored(KINDS[2], seed, train.train(cfg(teacher=group.name, distill_t=a.t, distill_alpha=a.alpha), workdir=ws, quiet=True), ws)
        set_seed(seed)
        scored(KINDS[3], seed, train.train(cfg(teacher=group.name, distill_t=a.t, distill_alpha=a.alpha, distill_test=True),
                                           workdir=ws, quiet=True), ws)
        print(f'seed {seed}: {time.time() - t0:.0f}s', flush=True)
        # recorded after every seed, so a bench stopped early keeps the seeds it finished
        rows = [{'kind': k, 'holdout_error_mean': round(statistics.mean(e), 4),
                 'holdout_error_sd': round(statistics.stdev(e), 4) if len(e) > 1 else None, 'seeds': len(e),
                 'errors': [round(x, 4) for x in e], 'predict_images_per_s': round(statistics.mean(speed[k]), 1)}
                for k, e in errs.items()]
        n = competition.load(comp_dir)
        record(a.name, rows, {'arch': a.arch, 'epochs': a.epochs, 'folds': a.folds, 't': a.t, 'alpha': a.alpha,
                              'scale': a.scale, 'frac': a.frac, 'extra': extra, 'n_train': len(n.train_df()),
                              'n_holdout': len(n.test_ids()), 'runs': runs})


if __name__ == '__main__':
    main()
