"""A 3-member ensemble with TTA 4 on the test set: comp.infer (each model loaded once, each image decoded once for
every model and pass; what the inference notebook runs) against fastai's `Learner.tta` per member (plain fastai
reading: every member decodes every image n+1 times), in test images per second.

Members are tiny test_convnext runs (different seeds) so that decoding, which decode-once saves, is what costs on a
CPU; on a GPU with large models the forward passes dominate and both approach K x (n+1) forward passes.
Usage: python bench/ensemble_predict.py [--scale 0.1] [--n 4] [--members 3] [--name ensemble-predict-cpu]"""
import json
import tempfile
from pathlib import Path

from common import Timer, parser, record, sample


def main():
    ap = parser(__doc__)
    ap.set_defaults(scale='0.1')
    ap.add_argument('--n', type=int, default=4)
    ap.add_argument('--members', type=int, default=3)
    ap.add_argument('--name', default='ensemble-predict-cpu')
    a = ap.parse_args()
    from comp import competition, config, ensemble, infer, learner, predict, train
    src = sample(float(a.scale) if a.scale not in ('small', 'full') else a.scale)
    rows = []
    with tempfile.TemporaryDirectory() as ws:
        competition.record(competition.load(src), ws)
        rs = [train.train(config.TrainConfig(arch='test_convnext', epochs=1, seed=s, workers=0), workdir=ws, quiet=True)
              for s in range(a.members)]
        rec = ensemble.ensemble([r.name for r in rs], tta=0, name='bench', workdir=ws)
        # the same members with TTA n: the record infer repeats (its ensemble validation is not what is timed)
        side = Path(ws) / 'submissions' / 'bench-tta.json'
        side.write_text(json.dumps({**json.loads(Path(rec['submission']).with_suffix('.json').read_text()), 'tta': a.n, 'beta': 0.25}))
        comp = competition.find(workdir=ws)
        n_img = len(comp.test_ids())
        with tempfile.TemporaryDirectory() as out, Timer() as t_comp:
            infer.predict('bench-tta', runs_from=ws, out=out, workdir=ws, echo=lambda m: None)
        with Timer() as t_fa:
            for r in rs:
                learn = learner.build_learner({**r.config, 'cache': False}, comp, r, ws)   # plain fastai reading
                learn.load('model', with_opt=False)
                learner.no_bars(learn)
                learn.tta(dl=predict.test_dl(learn, comp), n=a.n)
        for what, t in (('comp.infer (decode once, models loaded once)', t_comp.s), ("fastai Learner.tta per member", t_fa.s)):
            rows.append({'method': what, 'members': a.members, 'tta': a.n, 'test_images': n_img,
                         'seconds': round(t, 1), 'images_per_s': round(n_img / t, 1)})
    record(a.name, rows, {'speedup': round(t_fa.s / t_comp.s, 2)})


if __name__ == '__main__':
    main()
