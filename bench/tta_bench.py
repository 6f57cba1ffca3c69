"""TTA (n=4) on the test set: comp's decode-once TTA against fastai's Learner.tta, same tiny model and seed.

Usage: python bench/tta_bench.py [--scale full] [--n 4]"""
import tempfile

from common import Timer, parser, record, sample


def main():
    ap = parser(__doc__)
    ap.add_argument('--n', type=int, default=4)
    a = ap.parse_args()
    import torch
    from fastai.vision.all import set_seed
    from comp import competition, predict, train
    from comp.tta import tta
    src = sample(a.scale)
    with tempfile.TemporaryDirectory() as ws:
        competition.record(competition.load(src), ws)
        run = train.train(train.TrainConfig(arch='test_convnext', epochs=1), workdir=ws, quiet=True)
        learn, comp, _ = predict.load_learner(run, ws)
        dl = predict.test_dl(learn, comp)
        n_img = len(dl.dataset)
        set_seed(0)
        with Timer() as t_fa: ref, _ = learn.tta(dl=dl, n=a.n)
        set_seed(0)
        with Timer() as t_comp: ours = tta(learn, dl, n=a.n)
    same = bool(torch.allclose(ref, ours, atol=1e-6))
    rows = [{'tta': 'fastai Learner.tta', 'images': n_img, 'seconds': round(t_fa.s, 1), 'decodes_per_image': a.n + 1, 'ratio': 1.0},
            {'tta': 'comp tta (decode once)', 'images': n_img, 'seconds': round(t_comp.s, 1), 'decodes_per_image': 1,
             'ratio': round(t_fa.s / t_comp.s, 2)}]
    record('tta', rows, {'scale': a.scale, 'n': a.n, 'same_result': same, 'model': 'test_convnext (64 px, squish 96)'})
    print('same result as fastai:', same)


if __name__ == '__main__':
    main()
