"""Synthetic images for `comp sample`: Paddy Doctor's leaf photos (`draw_leaf`) and the small images of the other
kinds (`render`), each a pure function of its seed and index, with shapes a small model can learn."""
from .machine import cpus

W, H = 480, 640
# Lesion colours are drawn from one palette whatever the label, so colour alone never tells the label.
PALETTE = [(205, 190, 85), (125, 85, 45), (150, 150, 140), (225, 220, 195), (70, 55, 40), (200, 125, 55)]


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


SIZE, CACTUS_SIZE = 64, 32
# Marks on photos: dark, light and saturated, so they stand out on any background; one per dog-breed group.
MARKS = [(25, 20, 20), (240, 238, 230), (200, 40, 35), (35, 60, 190), (235, 200, 40), (30, 140, 60), (150, 60, 170),
         (240, 130, 30), (30, 170, 180), (120, 80, 40), (250, 150, 190), (90, 90, 90)]
MOTIFS = ['spots', 'bands', 'streaks', 'scratches', 'rings', 'squares', 'crosses', 'triangles', 'blotch', 'waves']


def render(jobs, seed, workers):
    """Each job's image as file bytes, in order; image k's randomness comes from (seed, k) alone."""
    jobs = [(j, seed, k) for k, j in enumerate(jobs)]
    workers = workers or cpus()
    if workers > 1 and len(jobs) > 400:
        from concurrent.futures import ProcessPoolExecutor
        with ProcessPoolExecutor(workers) as ex: return list(ex.map(_render_one, jobs, chunksize=64))
    return [_render_one(j) for j in jobs]


def _render_one(job):
    import io
    import numpy as np
    (style, arg), seed, k = job
    rng = np.random.default_rng([seed, k])
    im = DRAW[style](arg, rng)
    buf = io.BytesIO()
    if style == 'fundus': im.save(buf, format='PNG')
    else: im.save(buf, format='JPEG', quality=90)
    return buf.getvalue()


def _textured(rng, base, s, spread=40, grain=8):
    """A background of colour `base` with low-frequency shading and grain, s x s."""
    import numpy as np
    from PIL import Image
    shade = np.asarray(Image.fromarray((rng.random((4, 4)) * 255).astype('uint8')).resize((s, s), Image.BICUBIC))
    img = np.asarray(base, float) + (shade[..., None] / 255 - 0.5) * spread + rng.normal(0, grain, (s, s, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype('uint8'))


def _motif(d, name, s, rng, colour):
    """Draw `name`'s shapes on an s x s image: bold enough to survive a resize to half size."""
    import numpy as np
    U = rng.uniform
    w = max(2, round(s * .06))
    if name == 'spots':
        for _ in range(rng.integers(5, 9)):
            x, y, r = U(0, s), U(0, s), s * U(.05, .08)
            d.ellipse([x - r, y - r, x + r, y + r], fill=colour)
    elif name == 'bands':
        for _ in range(rng.integers(2, 4)):
            y, h = U(0, s * .9), s * U(.08, .12)
            d.rectangle([0, y, s, y + h], fill=colour)
    elif name == 'streaks':
        for _ in range(rng.integers(3, 6)):
            x, y, n = U(0, s), U(0, s * .6), s * U(.3, .5)
            d.line([(x, y), (x + U(-2, 2), y + n)], fill=colour, width=w)
    elif name == 'scratches':
        for _ in range(rng.integers(3, 6)):
            x, y, n, sign = U(0, s * .8), U(0, s * .7), s * U(.2, .3), rng.choice([-1, 1])
            d.line([(x, y), (x + sign * n, y + n)], fill=colour, width=w)
    elif name == 'rings':
        for _ in range(rng.integers(2, 4)):
            x, y, r = U(s * .15, s * .85), U(s * .15, s * .85), s * U(.12, .18)
            d.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=w)
    elif name == 'squares':
        for _ in range(rng.integers(2, 4)):
            x, y, a = U(0, s * .8), U(0, s * .8), s * U(.13, .2)
            d.rectangle([x, y, x + a, y + a], fill=colour)
    elif name == 'crosses':
        for _ in range(rng.integers(2, 4)):
            x, y, a = U(s * .15, s * .85), U(s * .15, s * .85), s * U(.12, .16)
            d.line([(x - a, y), (x + a, y)], fill=colour, width=w)
            d.line([(x, y - a), (x, y + a)], fill=colour, width=w)
    elif name == 'triangles':
        for _ in range(rng.integers(2, 4)):
            x, y, a = U(s * .1, s * .9), U(s * .2, s * .9), s * U(.12, .18)
            d.polygon([(x - a, y), (x + a, y), (x, y - 1.7 * a)], fill=colour)
    elif name == 'blotch':
        x, y, rx, ry = U(s * .3, s * .7), U(s * .3, s * .7), s * U(.2, .3), s * U(.15, .25)
        d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=colour)
    elif name == 'waves':
        for _ in range(rng.integers(1, 3)):
            y0, ph = U(s * .15, s * .85), U(0, 6.3)
            d.line([(x, y0 + s * .08 * np.sin(ph + x / s * 12)) for x in range(0, s + 1, 2)], fill=colour, width=w)


def _draw_leaf(motifs, rng):
    """A green leaf with each motif's lesions, in one colour from the lesion palette whatever the class."""
    from PIL import ImageDraw
    im = _textured(rng, (rng.uniform(40, 110), rng.uniform(90, 170), rng.uniform(20, 80)), SIZE)
    d = ImageDraw.Draw(im)
    colour = PALETTE[rng.integers(len(PALETTE))]
    for m in motifs: _motif(d, m, SIZE, rng, colour)
    return im


def _draw_photo(arg, rng):
    """Any-coloured background with the class's motif, in the class's colour where it has one, else any mark."""
    from PIL import ImageDraw
    motif, colour = arg
    im = _textured(rng, rng.uniform(70, 190, 3), SIZE, spread=60)
    colour = colour or MARKS[rng.integers(len(MARKS))]
    _motif(ImageDraw.Draw(im), motif, SIZE, rng, tuple(int(c) for c in colour))
    return im


def _draw_cactus(present, rng):
    """A 32x32 aerial view of sand with shrubs; a cactus is a green column-shaped bar."""
    from PIL import ImageDraw
    s, U = CACTUS_SIZE, rng.uniform
    im = _textured(rng, (U(150, 200), U(130, 170), U(90, 130)), s, spread=30, grain=6)
    d = ImageDraw.Draw(im)
    green = lambda: (int(U(40, 80)), int(U(90, 130)), int(U(30, 60)))
    for _ in range(rng.integers(0, 3)):   # shrubs: round and green, on both classes
        x, y, r = U(0, s), U(0, s), U(2, 3.5)
        d.ellipse([x - r, y - r, x + r, y + r], fill=green())
    if present:
        x, y, n = U(6, s - 6), U(0, s * .4), U(14, 26)
        d.line([(x, y), (x + U(-3, 3), y + n)], fill=green(), width=int(rng.integers(4, 7)))
    return im


# Lesions per grade: more with every grade, so the grade is a monotone visual quantity.
LESIONS = [0, 3, 7, 12, 18]


def _draw_fundus(grade, rng):
    """A fundus photo: an orange disc on black, a bright optic disc, and more lesions the higher the grade."""
    import numpy as np
    from PIL import Image, ImageDraw
    s, U = SIZE, rng.uniform
    bg = np.asarray(_textured(rng, (U(150, 200), U(60, 100), U(20, 50)), s, spread=50, grain=5))
    yy, xx = np.mgrid[:s, :s]
    cx, cy, r = s / 2 + U(-2, 2), s / 2 + U(-2, 2), s * .46
    im = Image.fromarray((bg * (((xx - cx) ** 2 + (yy - cy) ** 2) < r * r)[..., None]).astype('uint8'))
    d = ImageDraw.Draw(im)
    ox, oy, ro = cx + rng.choice([-1, 1]) * s * .22, cy + U(-4, 4), s * .08
    d.ellipse([ox - ro, oy - ro, ox + ro, oy + ro], fill=(250, 245, 225))
    for _ in range(LESIONS[grade] + rng.integers(0, 3)):
        a, rr, rl = U(0, 2 * np.pi), r * .8 * np.sqrt(U(0, 1)), U(2, 3)
        x, y = cx + rr * np.cos(a), cy + rr * np.sin(a)
        colour = (250, 235, 120) if rng.random() < .5 else (90, 10, 10)   # exudates and haemorrhages
        d.ellipse([x - rl, y - rl, x + rl, y + rl], fill=colour)
    return im


def _draw_pet(seen, rng):
    """A pet (an ellipse with ears) on a background whose brightness follows `seen`, the target plus noise."""
    import numpy as np
    from PIL import ImageDraw
    s, U = SIZE, rng.uniform
    light = .25 + .75 * np.clip(seen, 0, 100) / 100
    im = _textured(rng, rng.uniform(120, 250, 3) * light, s, spread=30)
    d = ImageDraw.Draw(im)
    x, y, rx, ry = U(s * .3, s * .7), U(s * .4, s * .7), s * U(.15, .25), s * U(.12, .2)
    coat = tuple(int(c) for c in MARKS[rng.integers(len(MARKS))])
    d.ellipse([x - rx, y - ry, x + rx, y + ry], fill=coat)
    for side in (-1, 1):
        d.polygon([(x + side * rx * .3, y - ry * .8), (x + side * rx * .9, y - ry * .6), (x + side * rx * .7, y - ry * 1.6)],
                  fill=coat)
    return im


DRAW = {'leaf': _draw_leaf, 'photo': _draw_photo, 'cactus': _draw_cactus, 'fundus': _draw_fundus, 'pet': _draw_pet}
