"""TTA (n=4) on the test set: comp's decode-once TTA against fastai's Learner.tta, same tiny model and seed.

fastai's side is the same trained run rebuilt without comp's decode-once cache, as plain fastai reads
images. `--method pad` (or crop) uses the item resize of the convnext recipes, where comp runs fastai's
own Learner.tta over its cache. Decodes per image for comp are read from the cache's slots: one for each
image every placement leaves unchanged, n+1 for the others.
Usage: python bench/tta_bench.py [--scale full] [--n 4] [--method squish|pad|crop]"""
import tempfile

from common import Timer, parser, record, sample


def main():
    ap = parser(__doc__)
    ap.add_argument('--n', type=int, default=4)
    ap.add_argument('--method', default='squish', choices=['squish', 'pad', 'crop'])
    a = ap.parse_args()
    import numpy as np
    import torch
    from fastai.vision.all import set_seed
    from comp import competition, config, learner, predict, train
    from comp.cache import ANY_SPLIT, VALID_ONLY
    from comp.cache import cache_of
    from comp.tta import tta
    src = sample(a.scale)
    # test_convnext's own item is squish 96x96; pad and crop keep Paddy's 3:4 portrait shape, as the recipes do
    resize = None if a.method == 'squish' else (a.method, (96, 72))
    with tempfile.TemporaryDirectory() as ws:
        competition.record(competition.load(src), ws)
        run = train.train(config.TrainConfig(arch='test_convnext', epochs=1, resize=resize), workdir=ws, quiet=True)
        learn, comp, _ = predict.load_learner(run, ws)
        plain = learner.build_learner({**run.config, 'cache': False}, comp, run, ws)
        plain.load('model', with_opt=False)
        learner.no_bars(plain)
        dl, plain_dl = predict.test_dl(learn, comp), predict.test_dl(plain, comp)
        assert cache_of(plain_dl.dataset) is None and cache_of(dl.dataset) is not None
        n_img = len(dl.dataset)
        set_seed(0)
        with Timer() as t_fa: ref, _ = plain.tta(dl=plain_dl, n=a.n)
        set_seed(0)
        with Timer() as t_comp: ours = tta(learn, dl, n=a.n)
        cache = cache_of(dl.dataset)
        slots = np.asarray(cache.done[-n_img:])
        decodes = (np.count_nonzero(slots == ANY_SPLIT) + (a.n + 1) * np.count_nonzero(slots == VALID_ONLY)) / n_img
    same = bool(torch.allclose(ref, ours, atol=1e-6))
    rows = [{'tta': 'fastai Learner.tta', 'images': n_img, 'seconds': round(t_fa.s, 1), 'decodes_per_image': a.n + 1, 'ratio': 1.0},
            {'tta': 'comp tta (decode once)', 'images': n_img, 'seconds': round(t_comp.s, 1),
             'decodes_per_image': round(decodes, 3), 'ratio': round(t_fa.s / t_comp.s, 2)}]
    name = 'tta' if a.method == 'squish' else f'tta-{a.method}'
    record(name, rows, {'scale': a.scale, 'n': a.n, 'same_result': same,
                        'model': f'test_convnext (64 px, {a.method} {"96x72" if resize else "96"})'})
    print('same result as fastai:', same)


if __name__ == '__main__':
    main()
