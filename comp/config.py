"""TrainConfig: each training setting once (default, help, command-line flag, check), and `resolve`, which fills a
config in from the model's recipe into the explicit dict a run records; a run's identity and how old records read.

The command line's training options are built from these fields (comp.cli), so `comp train`, `comp cv` and
`comp auto` cannot disagree on a default or a help text; a field's check runs once, in `resolve`."""
import math
from dataclasses import MISSING, asdict, dataclass, field, fields

from . import data, zoo
from .errors import ConfigError

SCHEDULES = ('fine_tune', 'one_cycle')
PRECISIONS = ('auto', 'fp32', 'fp16', 'bf16')
TARGETS = {'disease': ('label',), 'disease+variety': ('label', 'variety')}   # target -> train.csv columns, one head each
BETA = 0.25   # fastai's weight of the plain pass in TTA (Learner.tta's beta)


def option(default, help, cli=None, flag=None):
    """A TrainConfig field: its default, its help text, the type the command line reads it as (`cli`, default the
    default's), and its flag spelling where it is not `--name` (e.g. '--pretrained/--no-pretrained')."""
    return field(default=default, metadata={'help': help, 'cli': cli, 'flag': flag})


@dataclass
class TrainConfig:
    """What a run is trained with. A None is a value `resolve` fills in: the recipe's (size, resize, bs, accum, lr,
    epochs, schedule, pretrained: comp.zoo), the augmentation's (data.AUG), this machine's (workers, procs), or
    nothing (data: the recorded competition; weights, folds, sizes, teacher, drop, tracker: not used)."""
    arch: str = option('convnext_small', 'A recipe from `comp zoo` or any timm model name.')
    data: str = option(None, 'Competition folder (default: the one `comp sample`/`comp setup` recorded here).', cli='path')
    size: tuple = option(None, 'Training image size, e.g. 224 or 256x192 (height x width).', cli=str)
    resize: tuple = option(None, 'Item resize before augmentation: METHOD[:SIZE], METHOD squish|crop|pad, e.g. pad:480x360.', cli=str)
    bs: int = option(None, 'Batch size per step.', cli=int)
    accum: int = option(None, 'Gradient accumulation steps (effective batch = bs x accum).', cli=int)
    lr: object = option(None, 'Learning rate, or auto to run lr_find and use its valley.', cli=str)
    epochs: int = option(None, 'Epochs (fine_tune adds one frozen epoch; per fold with comp cv).', cli=int)
    schedule: str = option(None, 'fine_tune or one_cycle.', cli=str)
    pretrained: bool = option(None, 'Start from pretrained weights.', cli=bool, flag='--pretrained/--no-pretrained')
    weights: str = option(None, 'Pretrained weights file, or a folder of cached Hugging Face hub files.', cli='path')
    precision: str = option('auto', 'auto (bf16/fp16 on GPU, fp32 on CPU), fp32, fp16 or bf16.')
    channels_last: bool = option(False, 'Use channels-last memory format.', flag='--channels-last')
    target: str = option('disease', 'disease, or disease+variety for a two-headed model.')
    seed: int = option(42, 'Seed of the shared validation split (and folds) and of training.')
    valid_pct: float = option(0.2, 'Validation fraction of the shared split (without --folds); 0 trains on every '
                                   'image, with no validation score.')
    folds: int = option(None, 'Use K stratified folds instead of one split.', cli=int)
    fold: int = option(0, 'Which fold validates (with --folds).')
    workers: int = option(None, 'Data-loading workers (default: the CPU cores).', cli=int)
    cache: bool = option(True, 'Decode each image once per run (budget: COMP_DECODE_CACHE_GB, default a quarter of '
                               'memory).', flag='--cache/--no-cache')
    sync_free: bool = option(False, 'No per-batch read back to the CPU (losses, metrics, copies stay on the GPU).',
                             flag='--sync-free')
    # Regularisers and weight averaging (bench/quality.py measures each): 0 / 'last' is off.
    label_smoothing: float = option(0.0, "Label smoothing eps (fastai's LabelSmoothingCrossEntropyFlat), e.g. 0.1; 0: off.")
    mixup: float = option(0.0, "MixUp alpha (fastai's MixUp), e.g. 0.4; 0: off.")
    cutmix: float = option(0.0, "CutMix alpha (fastai's CutMix), e.g. 1.0; 0: off.")
    ema: float = option(0.0, "Keep an EMA of the weights (timm's ModelEmaV3, warmed up) with this decay, e.g. 0.998; "
                             "validate, save and predict with it. 0: off.")
    keep: str = option('last', "Save the last epoch's weights, or the best epoch's by validation error.")
    average_last: int = option(0, "Save the average of the last K epochs' weights (timm's avg_checkpoints). 0: off.")
    sizes: tuple = option(None, 'Progressive resizing: the epochs split across these growing sizes, e.g. 128,192,256 '
                                '(the last is --size).', cli=str)
    # aug_transforms strengths; None is the reference recipe's (data.AUG)
    min_scale: float = option(None, 'Smallest crop, as a fraction of the image area (default 0.75).', cli=float)
    max_rotate: float = option(None, 'Largest rotation in degrees (default 10).', cli=float)
    max_zoom: float = option(None, 'Largest zoom (default 1.1).', cli=float)
    max_lighting: float = option(None, 'Largest brightness/contrast change (default 0.2).', cli=float)
    max_warp: float = option(None, 'Largest perspective warp (default 0.2).', cli=float)
    flip: bool = option(None, 'Random horizontal flips (default: on).', cli=bool, flag='--flip/--no-flip')
    # Knowledge distillation (comp.distill): soft targets from a teacher's out-of-fold probabilities
    teacher: str = option(None, 'Distil from this teacher: a CV group, or a submission of CV groups (comp distill).', cli=str)
    distill_t: float = option(2.0, 'Distillation temperature (with --teacher).')
    distill_alpha: float = option(0.5, "Weight of the teacher's soft targets against the hard label (with --teacher).")
    distill_test: bool = option(False, "With --teacher: also train on the test images, the teacher's test probabilities "
                                       "their only target (no test label is used).", flag='--distill-test')
    procs: int = option(None, 'Data-parallel processes, one per GPU (CPU processes without a GPU); the effective batch '
                              'is bs x accum x procs, the lr unchanged. Under torchrun / accelerate launch: theirs.', cli=int)
    drop: str = option(None, 'Train without the training images this CSV lists by id (e.g. a CV group\'s suspects.csv '
                             'from `comp suspects`); images of the validation split or fold stay in validation.', cli='path')
    tracker: str = option(None, 'Also log the epochs\' metrics, config and plots to tensorboard, wandb or mlflow '
                                '(pip install comp[NAME]); the run\'s own records stay the reference.', cli=str)


def given(cfg):
    """The fields of `cfg` that differ from their defaults (what a user asked for), as a dict."""
    return {f.name: getattr(cfg, f.name) for f in fields(TrainConfig) if getattr(cfg, f.name) != f.default}


def defaults():
    """Every field's default, as a dict."""
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def resolve(cfg, comp=None):
    """The config with every default filled in from the recipe, each setting checked once, as a plain dict."""
    r = zoo.recipe(cfg.arch)
    out = asdict(cfg)
    out.update(name=r.name, arch=r.arch)
    if out['pretrained'] is None and not zoo.has_weights(r.arch): out['pretrained'] = False
    if out['sizes'] is not None: out['sizes'] = _sizes(out['sizes'])
    if out['size'] is None and out['sizes']:   # progressive resizing ends at the run's size
        out['size'] = out['sizes'][-1]
    chosen_schedule = out['schedule']
    for k in ('size', 'resize', 'bs', 'accum', 'lr', 'epochs', 'schedule', 'pretrained'):
        if out[k] is None: out[k] = getattr(r, k)
    out['size'] = hw(out['size'], 'size')
    out['resize'] = _resize(out['resize'])
    out['schedule'], out['schedule_why'] = _schedule(chosen_schedule, out['schedule'], out['pretrained'])
    _one_of(out, 'schedule', SCHEDULES, 'use fine_tune or one_cycle')
    _one_of(out, 'precision', PRECISIONS, f'use {", ".join(PRECISIONS)}')
    _one_of(out, 'target', TARGETS, f'use {" or ".join(TARGETS)}')
    _one_of(out, 'keep', ('best', 'last'), 'use best or last')
    out['lr'] = _lr(out['lr'])
    for k in ('bs', 'accum', 'epochs'): out[k] = _at_least_1(out, k)
    _number(out, 'valid_pct', lambda v: 0 <= v < 1, 'use a fraction from 0 (no validation set) to below 1, such as 0.2')
    check_seed(out['seed'])
    if out['workers'] is not None:
        out['workers'] = _int(out, 'workers', lambda v: v >= 0, 'use 0 (load in this process) or more')
    _resolve_procs(out)
    fixed = zoo.fixed_input_size(out['arch'])
    if fixed and out['sizes']:
        raise ConfigError(f'{out["arch"]} is built for one input size: drop --sizes (--size alone resizes it)')
    if fixed and tuple(out['size']) != fixed: zoo.check_input_size(out['arch'], out['size'])
    _resolve_regularisers(out)
    if out['tracker'] is not None:
        from .trackers import check
        out['tracker'] = check(out['tracker'])
    out['normalize'] = zoo.normalization(out['arch']) if out['pretrained'] else None
    out['images'] = None   # a pre-resized copy of the images, chosen when the run is made (comp.train)
    if comp is not None:
        out['data'] = str(comp.path)
        n = len(comp.pseudo_ids())
        if n: out['pseudo'] = n   # the runs table shows which runs saw pseudo-labels
        if out['target'] != 'disease' and (comp.task != 'single' or 'variety' not in comp.layout.extra_cols):
            raise ConfigError(f'--target {out["target"]} needs Paddy Doctor\'s variety column: use --target disease')
        if n and out['target'] != 'disease':
            raise ConfigError(f'{comp.path} has pseudo-labelled images, which have a disease label only: use --target disease')
        if out['drop'] is not None: out['drop'] = data.drop_record(out['drop'], comp)
    # Processes share the cores: by default each loads with its share of them.
    out['workers'] = data.num_workers(out['workers']) if out['workers'] is not None or out['procs'] == 1 else \
        max(1, data.num_workers() // out['procs'])
    return out


def flag(k):
    """A field's command-line flag: valid_pct -> --valid-pct."""
    return '--' + k.replace('_', '-')


def _one_of(out, k, allowed, how):
    if out[k] not in allowed: raise ConfigError(f'{flag(k)} {out[k]}: {how}')


def _at_least_1(out, k):
    try: v = int(out[k])
    except (TypeError, ValueError): v = 0
    if v < 1: raise ConfigError(f'{flag(k)} must be at least 1')
    return v


def _int(out, k, ok, how):
    try: v = int(out[k])
    except (TypeError, ValueError): v = None
    if v is None or not ok(v): raise ConfigError(f'{flag(k)} {out[k]}: {how}')
    return v


def check_seed(seed):
    """A seed numpy and sklearn take (0 to 2**32 - 1), else a ConfigError: theirs names neither --seed nor a value."""
    _int({'seed': seed}, 'seed', lambda v: 0 <= v < 2 ** 32, 'use a whole number from 0 to 4294967295, such as 42')


def _number(out, k, ok, how):
    """out[k] as a finite float that `ok` accepts, else a ConfigError naming the setting (inf is not JSON either)."""
    try: v = float(out[k])
    except (TypeError, ValueError): v = float('nan')
    if not (math.isfinite(v) and ok(v)): raise ConfigError(f'{flag(k)} {out[k]}: {how}')
    return v


def _lr(lr):
    if lr == 'auto': return lr
    try: v = float(lr)
    except (TypeError, ValueError): raise ConfigError(f'--lr {lr!r}: use a number such as 0.01, or auto') from None
    if not (math.isfinite(v) and v > 0): raise ConfigError(f'--lr {v}: use a positive number such as 0.01, or auto')
    return v


def _resize(resize):
    """(method, [h, w]) from a recipe's tuple or the command line's 'METHOD[:SIZE]' ('pad:480x360'; a method alone
    keeps 480)."""
    if isinstance(resize, str):
        method, _, size = resize.partition(':')
        resize = (method, size or '480')
    method, size = resize
    if method not in zoo.RESIZE_METHODS: raise ConfigError(f'--resize {method}: use squish, crop or pad')
    return [method, hw(size, 'resize')]


def _resolve_procs(out):
    """procs (a launcher's process count when under one) and the effective batch, bs x accum x procs. The learning
    rate stays the recipe's (or --lr's): comp does not scale it with the effective batch."""
    from . import distributed as dist
    under = dist.world()
    if out['procs'] is None: out['procs'] = under
    out['procs'] = _at_least_1(out, 'procs')
    if under > 1 and out['procs'] != under:
        raise ConfigError(f'--procs {out["procs"]}, but the launcher started {under} processes: drop --procs '
                          '(the launcher sets them)')
    out['effective_bs'] = out['bs'] * out['accum'] * out['procs']
    if out['procs'] > 1:
        off = [o for o, on in (('--ema', out['ema']), ('--keep best', out['keep'] == 'best'),
                               ('--average-last', out['average_last']), ('--sync-free', out['sync_free'])) if on]
        if off: raise ConfigError(f'{off[0]} is not supported with --procs {out["procs"]}: drop one of them')


def _resolve_regularisers(out):
    """Check the regularisers, averaging and augmentation options, and fill in the augmentation defaults."""
    def number(k, ok, how): out[k] = _number(out, k, ok, how)
    number('label_smoothing', lambda v: 0 <= v < 1, 'use a value from 0 (off) to below 1, such as 0.1')
    number('mixup', lambda v: v >= 0, 'use an alpha of 0 (off) or more, such as 0.4')
    number('cutmix', lambda v: v >= 0, 'use an alpha of 0 (off) or more, such as 1.0')
    number('ema', lambda v: 0 <= v < 1, 'use a decay from 0 (off) to below 1, such as 0.998')
    number('distill_t', lambda v: v > 0, 'use a temperature above 0, such as 2')
    number('distill_alpha', lambda v: 0 <= v <= 1, 'use a weight from 0 (hard labels only) to 1 (soft targets only), such as 0.5')
    if out['mixup'] and out['cutmix']: raise ConfigError('--mixup and --cutmix: use one of them')
    if out['distill_test'] and not out['teacher']:
        raise ConfigError("--distill-test trains on the teacher's test probabilities: give --teacher (or use comp distill)")
    if (out['mixup'] or out['cutmix']) and out['target'] != 'disease':
        raise ConfigError('--mixup/--cutmix mix one label per image: use them with --target disease')
    if out['keep'] == 'best' and data.no_validation(out):
        raise ConfigError('--keep best picks an epoch by validation error, and --valid-pct 0 leaves no validation set: use --keep last')
    out['average_last'] = _int(out, 'average_last', lambda v: v >= 0, 'use 0 (off) or K >= 2')
    if out['average_last'] and out['keep'] == 'best':
        raise ConfigError('--average-last averages the last epochs: use it with --keep last')
    if out['average_last'] > out['epochs']:
        raise ConfigError(f'--average-last {out["average_last"]} is more than the {out["epochs"]} epochs: use at most {out["epochs"]}')
    for k, v in data.AUG.items():
        if out[k] is None: out[k] = v
    number('min_scale', lambda v: 0 < v <= 1, 'use a fraction of the image area above 0, up to 1 (no crop)')
    number('max_rotate', lambda v: 0 <= v <= 180, 'use degrees from 0 (off) to 180')
    number('max_zoom', lambda v: v >= 1, 'use 1 (off) or more, such as 1.1')
    number('max_lighting', lambda v: 0 <= v < 1, 'use a value from 0 (off) to below 1, such as 0.2')
    number('max_warp', lambda v: 0 <= v < 1, 'use a value from 0 (off) to below 1, such as 0.2')
    out['flip'] = bool(out['flip'])
    if out['sizes'] is not None:
        sizes = out['sizes']
        shown = lambda s: str(s[0]) if s[0] == s[1] else f'{s[0]}x{s[1]}'
        if len(sizes) < 2 or len(sizes) > out['epochs']:
            raise ConfigError(f'--sizes {",".join(map(shown, sizes))}: use 2 to {out["epochs"]} (the epochs) sizes, such as 128,192,256')
        if sizes[-1] != out['size']:
            raise ConfigError(f'--sizes ends at {"x".join(map(str, sizes[-1]))} but --size is '
                              f'{"x".join(map(str, out["size"]))}: end --sizes at the size to predict at, or drop --size')
        shrinks = next(((a, b) for a, b in zip(sizes, sizes[1:]) if b == a or b[0] < a[0] or b[1] < a[1]), None)
        if shrinks:
            raise ConfigError(f'--sizes {",".join(map(shown, sizes))}: {shown(shrinks[1])} after {shown(shrinks[0])} '
                              'does not grow; progressive resizing trains at growing sizes, such as 128,192,256')


def _sizes(sizes):
    """[[h, w], ...] from '128,192,256' or a list; a ConfigError naming --sizes and the entry that is not a size."""
    return [hw(s, 'sizes') for s in (sizes.split(',') if isinstance(sizes, str) else sizes)]


def total_epochs(c):
    """The epochs a run trains, fine_tune's frozen epoch included."""
    return c['epochs'] + (c['schedule'] == 'fine_tune')


def split_key(c):
    """What names a config's shared split: runs with the same key validate on the same images."""
    return {k: c.get(k) for k in ('seed', 'valid_pct', 'folds', 'fold')}


def _schedule(chosen, recipe, pretrained):
    """(schedule, why): fine_tune's frozen epoch and lowered early-layer rates only make sense for pretrained weights."""
    if chosen is not None: return chosen, 'set by --schedule'
    if not pretrained:
        return 'one_cycle', 'no pretrained weights: one_cycle trains the whole randomly initialised model at the full rate'
    return recipe, "the recipe's, for pretrained weights"


# What a run's identity does not depend on: where its images and weights came from, how they were loaded.
NOT_IDENTITY = ('workers', 'images', 'weights', 'cache', 'sync_free', 'tracker', 'effective_bs', 'teacher_images')   # the last two: derived


def identity(c):
    """A resolved config without what does not change the run, as JSON would hold it: two configs with the same
    identity train the same run (so a notebook, a CV group or comp auto can find one it started before)."""
    import json
    c = {k: v for k, v in c.items() if k not in NOT_IDENTITY}
    if c.get('drop'): c['drop'] = {k: v for k, v in c['drop'].items() if k != 'file'}   # what it lists, wherever it is
    return json.loads(json.dumps(c, default=str))


# What runs recorded before a setting existed trained with: the value that reproduces them.
OLD_RECORDS = {'procs': 1, 'cache': True, 'sync_free': False, 'label_smoothing': 0.0, 'mixup': 0.0, 'cutmix': 0.0,
               'ema': 0.0, 'keep': 'last', 'average_last': 0, 'sizes': None, 'drop': None, 'tracker': None, 'teacher': None,
               'distill_t': 2.0, 'distill_alpha': 0.5, 'distill_test': False, **data.AUG}


def upgrade(c):
    """A run's (or CV group's) recorded config with the settings added since it was trained filled in, so every
    reader sees one shape; called once, where comp.runs reads a record."""
    if not isinstance(c, dict): return c   # a damaged record: the reader says so
    if c.get('kind') == 'cv':
        return {**c, 'train': upgrade(c['train'])} if isinstance(c.get('train'), dict) else c
    if 'arch' not in c: return c
    c = {**OLD_RECORDS, 'images': None, **c}
    if 'normalize' not in c: c['normalize'] = zoo.normalization(c['arch']) if c.get('pretrained') else None
    return c


def hw(size, what):
    """[height, width] from 224, '256x192', '256,192' or (256, 192); a ConfigError naming `--what` otherwise."""
    given_ = size if isinstance(size, str) else 'x'.join(map(str, size)) if isinstance(size, (list, tuple)) else size
    if isinstance(size, (int, float)): size = [size]
    if isinstance(size, str):
        try: size = [int(s) for s in size.lower().replace(',', 'x').split('x')]
        except ValueError: size = []
    size = list(size)
    if len(size) == 1: size = size * 2
    if len(size) != 2 or min(size) < 8: raise ConfigError(f'--{what} {given_!r}: use a size such as 224 or 256x192')
    return [int(s) for s in size]
