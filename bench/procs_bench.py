"""Data-parallel training throughput: the same run (`comp train`, the library call) on 1 and on N processes.

Each setting is a real run of comp.train.train on the sample competition (a fresh workspace per setting, so each
has its own decode-once cache): images/s are the training images over an epoch's seconds (training and validation,
as metrics.csv records them), averaged over the epochs after the first (which decodes). The per-process batch is the
recipe's in every setting, so N processes step with an N times larger effective batch. On a CPU the processes share
the cores (comp gives each its share of torch's threads); on a machine with GPUs, one process per GPU.
`--repeat R` runs the settings R times in turn (1, 2, 1, 2, ...): on a shared machine the load moves, and each row
records the load average (1 minute) before and after it.
`--threads T` sets torch's threads in this process, which a one-process run uses (the processes of a run of several
each take their share of the cores): on a loaded CPU, torch's threads waiting for each other can cost more than
the second core gives, so `--threads 1` tells DDP's scaling apart from that.
Usage: python bench/procs_bench.py [--scale small] [--arch demo] [--epochs 3] [--procs 1 2] [--workers 0] [--repeat 1]
                                   [--threads T]"""
import os
import tempfile

from common import parser, record, sample


def main():
    ap = parser(__doc__)
    ap.set_defaults(scale='small')
    ap.add_argument('--arch', default='demo')
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--procs', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--workers', type=int, default=0)
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--threads', type=int, default=None)
    ap.add_argument('--name', default=None, help='results file name (default procs-<device>)')
    a = ap.parse_args()
    import torch
    from comp import competition, config, train
    if a.threads: torch.set_num_threads(a.threads)
    data = sample(a.scale)
    rows = []
    for n in a.procs * a.repeat:
        load = os.getloadavg()[0]
        threads = torch.get_num_threads() if n == 1 else None
        with tempfile.TemporaryDirectory() as ws:
            competition.record(competition.load(data), ws)
            cfg = config.TrainConfig(arch=a.arch, epochs=a.epochs, workers=a.workers, procs=n)
            run = train.train(cfg, workdir=ws, quiet=True)
            m, res = run.metrics(), run.result
            later = m['seconds'].iloc[1:] if len(m) > 1 else m['seconds']
            rows.append({'procs': n, 'threads_1proc': threads, 'bs_per_process': run.config['bs'], 'effective_bs': run.config['effective_bs'],
                         'n_train': res['n_train'], 'epoch_s': [round(float(s), 2) for s in m['seconds']],
                         'images_per_s': round(res['n_train'] / float(later.mean()), 1),
                         'valid_error': round(res['valid_error'], 4),
                         'load_before_after': [round(load, 1), round(os.getloadavg()[0], 1)]})
    base = rows[0]['images_per_s']
    for r in rows: r['speedup'] = round(r['images_per_s'] / base, 2)   # against the first row
    dev = 'gpu' if torch.cuda.is_available() else 'cpu'
    record(a.name or f'procs-{dev}', rows, {'arch': a.arch, 'epochs': a.epochs, 'scale': a.scale, 'workers': a.workers,
                                            'threads': a.threads})


if __name__ == '__main__':
    main()
