"""Holdout error of the baseline recipe and of each training option, over several seeds on one shared split.

A holdout (comp.holdout) of the sample competition is scored offline: every run trains on the same shared split of
its training images, predicts the held-out images, and `comp.submission.score` gives the accuracy. Seeds vary the
model's initialisation and the augmentation draws (torch's generators), not the split.

    python bench/quality.py                      # CPU scale: a few minutes per option
    python bench/quality.py --scale full --arch convnext_small --epochs 12 --name quality-gpu   # a GPU

On a shared, loaded CPU, options run faster as one process each with OMP_NUM_THREADS=1: four two-thread processes
at once ran each epoch 10x slower than that (their threads wait on each other when preempted). `--first-seed`
adds seeds to an option measured before."""
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import holdout_workspace, parser, record, train_fields  # noqa: E402

OPTIONS = {   # name: TrainConfig fields on top of the baseline
    'baseline': {},
    'label_smoothing 0.1': {'label_smoothing': 0.1},
    'mixup 0.4': {'mixup': 0.4},
    'cutmix 1.0': {'cutmix': 1.0},
    'ema 0.99': {'ema': 0.99},
    'keep best': {'keep': 'best'},
    'average_last 3': {'average_last': 3},
    'min_scale 0.35': {'min_scale': 0.35},
    # progressive resizing ending at the demo recipe's own 64 px (names hold no comma: --options splits on it)
    'sizes 32-48-64': {'sizes': '32,48,64'},
}


def main():
    ap = parser(__doc__)
    ap.set_defaults(scale='0.03')
    ap.add_argument('--arch', default='test_convnext', help="recipe (default: timm's tiny test_convnext, from scratch)")
    ap.add_argument('--epochs', type=int, default=4)
    ap.add_argument('--seeds', type=int, default=3)
    ap.add_argument('--first-seed', type=int, default=0, help='seeds first-seed .. first-seed + seeds - 1 (more seeds later)')
    ap.add_argument('--frac', type=float, default=0.25, help='held-out fraction of the sample\'s training images')
    ap.add_argument('--options', default=','.join(OPTIONS), help='comma-separated names from: ' + ', '.join(OPTIONS))
    ap.add_argument('--extra', default='workers=0', help='more TrainConfig fields for every run, e.g. "size=64,bs=32"')
    ap.add_argument('--name', default='quality-cpu')
    a = ap.parse_args()
    from fastai.torch_core import set_seed
    from comp import competition, config, predict, submission, train
    work, comp_dir = holdout_workspace(a.scale, a.frac)
    extra = train_fields(a.extra)
    rows, runs = [], []
    for name in a.options.split(','):
        errs, secs = [], []
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            set_seed(seed)
            cfg = config.TrainConfig(arch=a.arch, epochs=a.epochs, **{**extra, **OPTIONS[name]})
            t0 = time.time()
            run = train.train(cfg, workdir=work, quiet=True)
            sub = predict.predict(run, workdir=work)['submission']
            errs.append(1 - submission.score(sub, workdir=work))
            secs.append(time.time() - t0)
            runs.append({'option': name, 'seed': seed, 'run': run.name, 'holdout_error': errs[-1],
                         'valid_error': run.result['valid_error'], 'saved_weights': run.result.get('saved_weights')})
            print(f'{name} seed {seed}: holdout error {errs[-1]:.4f} ({secs[-1]:.0f}s)', flush=True)
        rows.append({'option': name, 'holdout_error_mean': round(statistics.mean(errs), 4),
                     'holdout_error_sd': round(statistics.stdev(errs), 4) if len(errs) > 1 else None,
                     'seeds': len(errs), 'errors': [round(e, 4) for e in errs],
                     'seconds_per_run': round(statistics.mean(secs), 1)})
    n = competition.load(comp_dir)
    import torch
    record(a.name, rows, {'arch': a.arch, 'epochs': a.epochs, 'scale': a.scale, 'frac': a.frac, 'extra': extra,
                          'first_seed': a.first_seed, 'torch_threads': torch.get_num_threads(),
                          'n_train': len(n.train_df()), 'n_holdout': len(n.test_ids()), 'runs': runs})


if __name__ == '__main__':
    main()
