"""A synthetic competition in exactly Paddy Doctor's layout, for demos, tests and benchmarks."""
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .errors import ConfigError
from .machine import cpus

# Real label counts of Paddy Doctor's train set (its Kaggle data page); the vocab order is sorted.
COUNTS = {'bacterial_leaf_blight': 479, 'bacterial_leaf_streak': 380, 'bacterial_panicle_blight': 337,
          'blast': 1738, 'brown_spot': 965, 'dead_heart': 1442, 'downy_mildew': 620, 'hispa': 1594,
          'normal': 1764, 'tungro': 1088}
LABELS = sorted(COUNTS)
N_TEST = 3469
VARIETIES = {'ADT45': .672, 'KarnatakaPonni': .095, 'Ponni': .080, 'AtchayaPonni': .044, 'Zonal': .047,
             'AndraPonni': .036, 'Onthanel': .014, 'IR20': .011, 'RR': .004, 'Surya': .006}
AGES = [45, 47, 50, 55, 57, 60, 62, 65, 66, 67, 68, 70, 72, 73, 75, 77, 80, 82]
SCALES = {'small': 0.03, 'full': 1.0}
W, H = 480, 640
# Lesion colours are drawn from one palette whatever the label, so colour alone never tells the label.
PALETTE = [(205, 190, 85), (125, 85, 45), (150, 150, 140), (225, 220, 195), (70, 55, 40), (200, 125, 55)]


def scale_frac(scale):
    """'small' (tens of images per label), 'full' (the real 10,407/3,469) or a fraction of the real sizes."""
    if isinstance(scale, str) and scale in SCALES: return SCALES[scale]
    try: frac = float(scale)
    except ValueError: frac = -1
    if not 0 < frac <= 1:
        raise ConfigError(f'--scale {scale!r} is not valid: use small, full, or a fraction such as 0.05')
    return frac


def write_sample(dest, scale='small', seed=42, workers=None):
    """Write the sample competition into `dest` (which must be empty or absent) and return its path."""
    from .competition import check_new_folder
    from .config import check_seed
    from .files import atomic_dir
    frac, final = scale_frac(scale), Path(dest)
    check_seed(seed)
    check_new_folder(final)
    with atomic_dir(final) as tmp: _write(tmp, frac, seed, workers)
    return final


def sample(dest, scale='small', seed=42, workdir='.'):
    """`comp sample`: write the sample competition into `dest` and record it as `workdir`'s competition."""
    from . import competition
    path = write_sample(dest, scale=scale, seed=seed)
    competition.record(competition.load(path), workdir)
    return path


def _write(dest, frac, seed, workers):
    import numpy as np
    import pandas as pd
    from .competition import Layout
    from .files import write_csv
    rng = np.random.default_rng(seed)
    counts = {lbl: max(3, round(n * frac)) for lbl, n in COUNTS.items()}
    n_train, n_test = sum(counts.values()), max(10, round(N_TEST * frac))
    train_labels = [lbl for lbl in LABELS for _ in range(counts[lbl])]
    p = np.array([counts[lbl] for lbl in LABELS], float)
    test_labels = list(rng.choice(LABELS, size=n_test, p=p / p.sum()))
    train_ids = [f'{100001 + i}.jpg' for i in rng.permutation(n_train)]
    test_ids = [f'{200001 + i}.jpg' for i in range(n_test)]
    # Paddy has 4 landscape images among 10,407; keep a few at every scale so code meets them.
    landscape = set(rng.choice(n_train, size=min(4, n_train), replace=False).tolist())
    L = Layout()  # Paddy Doctor's names
    jobs = [(dest / L.train_dir / lbl / i, lbl, seed, k, k in landscape)
            for k, (i, lbl) in enumerate(zip(train_ids, train_labels))]
    jobs += [(dest / L.test_dir / i, lbl, seed, n_train + k, False)
             for k, (i, lbl) in enumerate(zip(test_ids, test_labels))]
    for lbl in LABELS: (dest / L.train_dir / lbl).mkdir(parents=True, exist_ok=True)
    (dest / L.test_dir).mkdir(parents=True, exist_ok=True)
    workers = workers or cpus()
    if workers > 1 and len(jobs) > 50:
        with ProcessPoolExecutor(workers) as ex: list(ex.map(_write_image, jobs, chunksize=32))
    else:
        for j in jobs: _write_image(j)
    v = list(VARIETIES)
    pv = np.array(list(VARIETIES.values())); pv /= pv.sum()
    variety, age = L.extra_cols
    train = pd.DataFrame({L.id_col: train_ids, L.label_col: train_labels,
                          variety: rng.choice(v, size=n_train, p=pv), age: rng.choice(AGES, size=n_train)})
    write_csv(dest / L.train_csv, train.sort_values([L.label_col, L.id_col]))
    write_csv(dest / L.sample_csv, pd.DataFrame({L.id_col: test_ids, L.label_col: ''}))
    write_csv(dest / L.solution_csv, pd.DataFrame({L.id_col: test_ids, L.label_col: test_labels}))


def _write_image(job):
    path, label, seed, k, landscape = job
    draw_leaf(label, seed, k, landscape).save(path, quality=90)


def draw_leaf(label, seed=42, k=0, landscape=False):
    """One synthetic leaf photo: textured green background plus the label's lesion pattern."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter
    rng = np.random.default_rng([seed, k])
    w, h = (H, W) if landscape else (W, H)
    # Background: a random green, low-frequency shading, grain, and faint parallel veins.
    base = np.array([rng.uniform(40, 110), rng.uniform(90, 170), rng.uniform(20, 80)])
    shade = np.asarray(Image.fromarray((rng.random((8, 6)) * 255).astype('uint8')).resize((w, h), Image.BICUBIC))
    img = base + (shade[..., None] / 255 - 0.5) * rng.uniform(30, 70)
    grain = rng.normal(0, 9, (h // 2, w // 2, 3))
    img = img + np.asarray(Image.fromarray(np.clip(grain + 128, 0, 255).astype('uint8')).resize((w, h))) - 128.
    im = Image.fromarray(np.clip(img, 0, 255).astype('uint8'))
    d = ImageDraw.Draw(im)
    vein = tuple(int(c) for c in np.clip(base + 25, 0, 255))
    x0, step = rng.uniform(0, 25), rng.uniform(18, 32)
    while x0 < w:
        d.line([(x0, 0), (x0 + rng.uniform(-20, 20), h)], fill=vein, width=2)
        x0 += step
    colour = PALETTE[rng.integers(len(PALETTE))]
    c = lambda: tuple(int(v) for v in np.clip(np.array(colour) + rng.normal(0, 12, 3), 0, 255))
    U = rng.uniform
    if label == 'bacterial_leaf_blight':    # wide wavy bands running down from the tip along one edge
        for _ in range(rng.integers(1, 3)):
            x, bw, length = U(0, w - 80), U(45, 75), U(0.45, 0.9) * h
            pts = [(x + 12 * np.sin(t / 40), t) for t in np.arange(0, length, 20)]
            d.line(pts, fill=c(), width=int(bw))
    elif label == 'bacterial_leaf_streak':  # many thin short vertical streaks
        for _ in range(rng.integers(8, 14)):
            x, y, n = U(0, w), U(0, h - 150), U(100, 200)
            d.line([(x, y), (x + U(-6, 6), y + n)], fill=c(), width=int(U(10, 14)))
    elif label == 'bacterial_panicle_blight':  # a few large blotches
        for _ in range(rng.integers(2, 4)):
            x, y, rx, ry = U(0, w), U(0, h), U(55, 95), U(45, 85)
            d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=c())
    elif label == 'blast':                  # spindle-shaped lesions with a dark rim
        for _ in range(rng.integers(3, 7)):
            x, y, a, b = U(40, w - 40), U(70, h - 70), U(50, 80), U(20, 32)
            d.polygon([(x, y - a), (x + b, y), (x, y + a), (x - b, y)], fill=c(), outline=(45, 30, 20), width=7)
    elif label == 'brown_spot':             # many small round spots
        for _ in range(rng.integers(15, 28)):
            x, y, r = U(0, w), U(0, h), U(12, 18)
            d.ellipse([x - r, y - r, x + r, y + r], fill=c())
    elif label == 'dead_heart':             # bands right across the leaf
        for _ in range(rng.integers(2, 4)):
            y, bh = U(0, h - 40), U(22, 38)
            d.rectangle([0, y, w, y + bh], fill=c())
    elif label == 'downy_mildew':           # ring-shaped patches
        for _ in range(rng.integers(3, 6)):
            x, y, r = U(0, w), U(0, h), U(35, 60)
            d.ellipse([x - r, y - r, x + r, y + r], outline=c(), width=11)
    elif label == 'hispa':                  # short diagonal scratches
        for _ in range(rng.integers(8, 14)):
            x, y, n, s = U(0, w), U(0, h), U(45, 75), rng.choice([-1, 1])
            d.line([(x, y), (x + s * n, y + n)], fill=c(), width=11)
    elif label == 'tungro':                 # square discoloured patches
        for _ in range(rng.integers(3, 6)):
            x, y, s = U(0, w - 60), U(0, h - 60), U(60, 110)
            d.rectangle([x, y, x + s, y + s], fill=c())
    # 'normal' has no lesions. A slight blur makes edges photo-like rather than synthetic.
    return im.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.2)))
