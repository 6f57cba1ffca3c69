"""Data pipeline throughput over 3 epochs with the model replaced by a no-op: comp against plain fastai.

Plain fastai is the reference's part 1: ImageDataLoaders.from_folder(valid_pct=0.2, seed=42,
item_tfms=Resize(480, method='squish'), batch_tfms=aug_transforms(size=128, min_scale=0.75)).
comp: the same transforms through comp.data.dataloaders, reading a `comp resize` copy when one is given,
with the decode-once cache.  Usage: python bench/pipeline_bench.py [--scale full] [--epochs 3] [--resized 256]"""
import tempfile

from common import Timer, parser, record, sample


def epochs(dl, n):
    out = []
    for _ in range(n):
        k = 0
        with Timer() as t:
            for xb, yb in dl: k += len(xb)   # the no-op model: batches are produced and dropped
        out.append(round(k / t.s, 1))
    return out


def main():
    ap = parser(__doc__)
    ap.add_argument('--epochs', type=int, default=3)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--resized', type=int, default=256, help='longest side of the comp resize copy (0: originals)')
    ap.add_argument('--method', default='squish', help="comp's item resize: squish (square), or pad/crop at the photos' 3:4")
    a = ap.parse_args()
    from fastai.vision.all import ImageDataLoaders, Resize, aug_transforms, set_seed
    from comp import competition, data, resize
    from comp.machine import cpus
    src = sample(a.scale)
    comp = competition.load(src)
    workers = cpus()
    set_seed(42)
    ref = ImageDataLoaders.from_folder(src, train='train_images', valid_pct=0.2, seed=42, bs=a.bs, num_workers=workers,
                                       item_tfms=Resize(480, method='squish'),
                                       batch_tfms=aug_transforms(size=128, min_scale=0.75))
    fa = epochs(ref.train, a.epochs)
    with tempfile.TemporaryDirectory() as tmp:
        root = resize.resize(a.resized, comp, workdir=tmp)[0] if a.resized else None
        # the item size the reference resizes to before augmenting, capped by the copy's short side
        item = 480 if not a.resized else min(480, int(a.resized * 0.75))
        side = min(480, a.resized or 480)
        hw = (item, item) if a.method == 'squish' else (side, side * 3 // 4)
        dls = data.dataloaders(comp, data.valid_ids(comp, tmp), (128, 128), (a.method, hw), bs=a.bs,
                               workers=workers, root=root)
        ours = epochs(dls.train, a.epochs)
    rows = [{'pipeline': 'plain fastai (from_folder, squish 480)', **{f'epoch{i + 1}_img_s': v for i, v in enumerate(fa)}},
            {'pipeline': f'comp (resize {a.resized}, {a.method} {hw[0]}x{hw[1]}, decode once)', **{f'epoch{i + 1}_img_s': v for i, v in enumerate(ours)}},
            {'pipeline': 'ratio', **{f'epoch{i + 1}_img_s': round(o / f, 2) for i, (o, f) in enumerate(zip(ours, fa))}}]
    record('pipeline' if a.method == 'squish' else f'pipeline-{a.method}', rows,
           {'scale': a.scale, 'bs': a.bs, 'workers': workers, 'resized': a.resized, 'method': a.method})


if __name__ == '__main__':
    main()
