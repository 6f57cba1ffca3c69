"""How a competition is laid out and judged: the Layout that comp.json records, the kinds of labels, submissions
and image folders, and how labels sort and read as numbers."""
from dataclasses import dataclass, field

IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff'}
LABEL = 'label'      # the label column of `Competition.train_df`, whatever the CSV calls it
VALUE = 'value'      # the one output of a regressed target (regression, ordinal grade)
TASKS = ('single', 'multi', 'regression', 'ordinal')
SUBMISSIONS = ('label', 'probs', 'prob', 'labels', 'grade', 'number')
IMAGES = ('folders', 'flat', 'names')


@dataclass
class Layout:
    """How a competition is laid out and judged; the defaults are Paddy Doctor's (`describe` infers the rest)."""
    train_dir: str = 'train_images'
    test_dir: str = 'test_images'
    train_csv: str = 'train.csv'
    sample_csv: str = 'sample_submission.csv'
    solution_csv: str = 'solution.csv'
    pseudo_csv: str = 'pseudo.csv'        # `comp pseudo`: which train.csv rows are pseudo-labelled test images
    id_col: str = 'image_id'
    label_col: str = 'label'
    extra_cols: list = field(default_factory=lambda: ['variety', 'age'])   # columns train.csv must have
    images: str = 'folders'    # train_dir/<label>/<file> | train_dir/<file> | no label CSV: the label is the file name up to its first '.'
    ext: str = ''              # appended to an id to name its file (ids written without extension)
    test_csv: str = ''         # where the test ids are listed; '' = the sample submission
    task: str = 'single'       # one class per image | several | a number | an integer grade
    label_cols: list = field(default_factory=list)   # one-hot label columns (then label_col is unused)
    names: dict = field(default_factory=dict)        # code -> class name, for messages only
    submission: str = 'label'  # a class per row | one probability per class | P(positive) | space-separated labels | a grade | a number
    sub_cols: list = field(default_factory=list)     # the sample submission's columns; [] = id_col, label_col
    positive: str = ''         # 'prob' submissions: the class whose probability is written
    metric: str = 'accuracy'   # a key of comp.metrics.METRICS
    range: list = field(default_factory=list)        # [lo, hi] of a regressed target

    @property
    def columns(self): return self.sub_cols or [self.id_col, self.label_col]


def sorted_labels(labels):
    """Class names sorted; integer codes by value (so 10 comes after 9)."""
    labels = list(labels)
    if labels and all(is_int(v) for v in labels): return sorted(labels, key=int)
    return sorted(labels)


def image_names(d):
    """The names of the image files in folder `d` (by extension); empty where there is no such folder."""
    return {f.name for f in d.iterdir() if f.suffix.lower() in IMAGE_EXTS} if d.is_dir() else set()


def is_int(v):
    try: return float(v) == int(float(v))
    except (TypeError, ValueError): return False


def is_float(v):
    try: float(v); return True
    except (TypeError, ValueError): return False


TASK_WORDS = {'single': 'one class per image', 'multi': 'several labels per image', 'regression': 'a number to regress',
              'ordinal': 'an integer grade'}
SUB_WORDS = {'label': 'a class per row', 'probs': 'one probability per class', 'prob': 'the probability of {positive}',
             'labels': 'space-separated labels', 'grade': 'an integer grade', 'number': 'a number'}
