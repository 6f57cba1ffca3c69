"""What the notebooks in nbs/ share, so each of their cells is a call or two: the competition in smoke or real
mode, a run's config with the weights the notebook has, train-or-resume, and Kaggle's submission.csv."""
import shutil
from pathlib import Path

from . import competition, kaggle, kernel, runs, sample, submission
from .errors import ConfigError, KaggleError
from .files import atomic_dir, atomic_path

# The sample's size in smoke mode: Paddy Doctor's ~100 training images and 35 test images. Other competitions' samples
# are written 'small': about as many (40 test images), and unlike a fraction it keeps enough images per class for a
# split by label in every kind (0.01 of Dog Breed Identification is 3 images of each of 8 breeds).
SMOKE_SCALE = 0.01
SAMPLE_DIR = 'paddy-sample'    # Paddy Doctor's; another competition's sample is NAME-sample
SUBMISSION = 'submission.csv'  # what Kaggle reads from a notebook's working folder


def sample_dir(name=competition.PADDY):
    """The folder (in the working folder) of the sample that smoke mode writes for competition `name`."""
    return SAMPLE_DIR if name == competition.PADDY else f'{name}-sample'


def setup(smoke=False, name=competition.PADDY, workdir='.', metric=None):
    """The notebook's competition `name` (any Kaggle image competition): the one recorded here, else attached
    (Kaggle), else a sample in its layout written here (smoke mode), else downloaded. `metric` (a key of comp.metrics)
    is the competition's metric where the API cannot say (a notebook without internet); `comp push-notebook` sets it."""
    ws = Path(workdir)
    if (ws / competition.WORKSPACE_FILE).exists(): return competition.find(workdir=ws)
    if smoke and not (kernel.in_kaggle_notebook() and kernel.attached(name, ws)):
        if name not in sample.LIKES:
            raise ConfigError(f'smoke mode writes a sample of the competition, and comp has no sample of {name!r}: '
                              f'attach its data, set smoke = False, or set competition to one of {", ".join(sample.LIKES)}')
        path = ws / sample_dir(name)
        # write_sample makes the folder whole or not at all: one there (not empty) is a complete sample.
        if not path.is_dir() or not any(path.iterdir()):
            sample.write_sample(path, scale=SMOKE_SCALE if name == competition.PADDY else 'small', like=name)
        comp = sample.describe(path, like=name, metric=metric)
        competition.record(comp, ws)
        return comp
    return kaggle.setup(name, workdir=ws, metric=metric)


def config(arch, smoke=False, workdir='.', **kw):
    """A TrainConfig for `arch`: pretrained weights from the attached weights dataset when it holds them; in smoke
    mode without them, none (tiny models from scratch); in smoke mode one epoch and no worker processes."""
    from .config import TrainConfig
    w = kernel.weights_for(arch, workdir)
    if w is not None:
        kw.setdefault('pretrained', True)
        kw.setdefault('weights', str(w))
    elif smoke: kw.setdefault('pretrained', False)
    if smoke:
        kw.setdefault('epochs', 1)
        kw.setdefault('workers', 0)
    return TrainConfig(arch=arch, **kw)


def train(cfg, workdir='.', quiet=False, procs=None):
    """The run of `cfg` here: a complete one as it is, an incomplete one resumed, else a new one trained.

    So a notebook stopped halfway picks up where it was when run again (a failed run is trained anew). `procs`:
    data-parallel processes (a Kaggle 2xT4 notebook: 2), started by accelerate's notebook_launcher."""
    import dataclasses
    from . import train as tr
    from .config import resolve
    if procs is not None: cfg = dataclasses.replace(cfg, procs=procs)
    comp = competition.find(cfg.data, workdir)
    run = runs.trained(resolve(cfg, comp), workdir)
    if run is not None and run.status == 'complete':
        err = run.result.get('valid_error')
        print(f'{run.name}: already trained, ' + (f'validation error {err:.4f}' if err is not None else 'no validation set'))
        return run
    if run is not None:
        print(f'{run.name}: resuming')
        return tr.train(None, workdir=workdir, resume=run, quiet=quiet)
    return tr.train(cfg, workdir=workdir, quiet=quiet)


SMOKE_RUNS = 'smoke-runs'   # smoke mode's stand-in for an attached runs dataset


def inference_runs(smoke=False, workdir='.'):
    """The folder the inference notebook predicts from: the attached runs (a `comp push-runs` dataset, or a training
    notebook's output); in smoke mode without them, a tiny run trained, predicted and packed here as push-runs packs
    it, so the path from packing to prediction runs in comp's tests too."""
    from . import bundle
    found = kernel.runs_dir(workdir)
    if found is not None: return found
    if not smoke:
        raise ConfigError('no runs attached to predict with: `comp push-runs SUBMISSION`, then `comp push-notebook '
                          'nbs/06-inference.ipynb` (which attaches them), or attach a training notebook\'s output')
    dest = Path(workdir) / SMOKE_RUNS
    if not (dest / bundle.MANIFEST).exists():
        from .predict import predict
        rec = predict(train(config('test_convnext', smoke=True, workdir=workdir), workdir=workdir, quiet=True), workdir=workdir)
        with atomic_dir(dest) as tmp: bundle.pack([Path(rec['submission']).stem], tmp, workdir)
    return dest


def write_submission(result, workdir='.'):
    """Validate a submission (a path, or a record with 'submission' as predict and ensemble return) and copy it to
    ./submission.csv, the file Kaggle takes from a notebook."""
    src = Path(result['submission'] if isinstance(result, dict) else result)
    comp = competition.find(workdir=workdir, check_images=False)
    submission.validate(src, comp)
    dest = Path(workdir) / SUBMISSION
    with atomic_path(dest) as tmp: shutil.copyfile(src, tmp)
    return dest


def submit(message, file=SUBMISSION, smoke=False, workdir='.', echo=print):
    """Submit `file` to Kaggle when this is a real run and credentials are there; else say why not, and return None."""
    if smoke:
        echo('smoke run: not submitted')
        return None
    try:
        kaggle.api()
        return kaggle.submit(file, message, workdir=workdir, echo=echo)
    except KaggleError as e:
        # Offline, Kaggle still takes the notebook's submission.csv from its Output tab.
        echo(f'not submitted ({e}); submit {file} from the notebook\'s Output on Kaggle instead')
        return None
