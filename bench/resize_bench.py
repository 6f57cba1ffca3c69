"""Pre-resize throughput: `comp resize` against fastai's `resize_images`, same images, same cores.

Usage: python bench/resize_bench.py [--scale full] [--size 256]"""
import tempfile
from pathlib import Path

from common import Timer, parser, record, sample


def main():
    ap = parser(__doc__)
    ap.add_argument('--size', type=int, default=256)
    a = ap.parse_args()
    from fastai.vision.all import get_image_files, resize_images
    from comp import competition, resize
    src = sample(a.scale)
    comp = competition.load(src)
    n = len(get_image_files(src))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        with Timer() as t_fa:  # the reference: fastai's resize_images(max_size=...) as in "Road to the Top" part 2
            resize_images(src, dest=Path(tmp) / 'fastai', max_size=a.size, recurse=True)
        with Timer() as t_comp:
            resize.resize(comp, a.size, workdir=Path(tmp) / 'comp')
        with Timer() as t_again:
            _, redone = resize.resize(comp, a.size, workdir=Path(tmp) / 'comp')
    rows.append({'tool': 'fastai resize_images', 'images': n, 'seconds': round(t_fa.s, 1), 'images_per_s': round(n / t_fa.s, 1), 'ratio': 1.0})
    rows.append({'tool': 'comp resize', 'images': n, 'seconds': round(t_comp.s, 1), 'images_per_s': round(n / t_comp.s, 1),
                 'ratio': round(t_fa.s / t_comp.s, 2)})
    rows.append({'tool': 'comp resize (again, up to date)', 'images': redone, 'seconds': round(t_again.s, 1),
                 'images_per_s': '-', 'ratio': round(t_fa.s / t_again.s, 1)})
    record('resize', rows, {'scale': a.scale, 'size': a.size})


if __name__ == '__main__':
    main()
