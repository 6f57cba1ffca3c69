"""Pre-resize throughput: `comp resize` against fastai's `resize_images`, same images, same cores.

Also times each stage of one image's work on one core (open, reduced-scale decode, resize, JPEG encode,
file write), to show what bounds the ratio. Usage: python bench/resize_bench.py [--scale full] [--size 256]"""
import io
import os
import tempfile
import time
from pathlib import Path

from common import Timer, parser, record, sample


def stages(files, size, tmp):
    """Milliseconds per image for each stage of comp's resize_image, and fastai's whole resize_image, on one core."""
    from PIL import Image
    from fastai.vision.all import resize_image
    new = None
    out = {k: 0.0 for k in ('open', 'decode_reduced', 'resize', 'encode', 'write', 'fastai_whole')}
    for i, f in enumerate(files):
        t0 = time.perf_counter()
        im = Image.open(f)
        w, h = im.size
        s_ = min(1.0, size / max(w, h))
        new = (max(1, round(w * s_)), max(1, round(h * s_)))
        t1 = time.perf_counter()
        im.draft('RGB', new)
        im = im.convert('RGB')
        t2 = time.perf_counter()
        im = im.resize(new, Image.BILINEAR)
        t3 = time.perf_counter()
        b = io.BytesIO()
        im.save(b, format='JPEG', quality=90)
        t4 = time.perf_counter()
        Path(tmp, f'{i}.jpg').write_bytes(b.getvalue())  # a new file, as in comp resize: no overwrite
        t5 = time.perf_counter()
        # fastai's resize_image wants `file` relative to `src`: given an absolute path, dest/file is the source itself
        resize_image(Path(f.name), dest=Path(tmp, 'fastai1'), src=f.parent, max_size=size)
        t6 = time.perf_counter()
        for k, dt in zip(out, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)): out[k] += dt
    return {k: round(v / len(files) * 1000, 3) for k, v in out.items()}


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
            resize.resize(a.size, comp, workdir=Path(tmp) / 'comp')
        with Timer() as t_again:
            _, redone = resize.resize(a.size, comp, workdir=Path(tmp) / 'comp')
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        ms = stages(sorted(get_image_files(src / 'train_images'))[:300], a.size, tmp)
    rows.append({'tool': 'fastai resize_images', 'images': n, 'seconds': round(t_fa.s, 1), 'images_per_s': round(n / t_fa.s, 1), 'ratio': 1.0})
    rows.append({'tool': 'comp resize', 'images': n, 'seconds': round(t_comp.s, 1), 'images_per_s': round(n / t_comp.s, 1),
                 'ratio': round(t_fa.s / t_comp.s, 2)})
    rows.append({'tool': 'comp resize (again, up to date)', 'images': redone, 'seconds': round(t_again.s, 1),
                 'images_per_s': '-', 'ratio': round(t_fa.s / t_again.s, 1)})
    comp_ms = sum(v for k, v in ms.items() if k != 'fastai_whole')
    floor = ms['fastai_whole'] / (comp_ms - ms['resize'])
    print('ms per image on one core:', ms, f'-> ratio with a free resize: {floor:.2f}')
    record('resize' if a.size == 256 else f'resize-{a.size}', rows,
           {'scale': a.scale, 'size': a.size, 'ms_per_image_one_core': ms,
            'ratio_if_resize_were_free': round(floor, 2)})


if __name__ == '__main__':
    main()
