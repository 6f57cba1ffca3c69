"""What the notebooks in nbs/ share, so each of their cells is a call or two: the competition in smoke or real
mode, a run's config with the weights the notebook has, train-or-resume, and Kaggle's submission.csv."""
import shutil
from pathlib import Path

from . import competition, kaggle, kernel, runs, sample, submission
from .errors import KaggleError
from .files import atomic_path

SMOKE_SCALE = 0.01             # the sample's size in smoke mode: ~100 training images, 35 test images
SAMPLE_DIR = 'paddy-sample'
SUBMISSION = 'submission.csv'  # what Kaggle reads from a notebook's working folder


def setup(smoke=False, name=competition.PADDY, workdir='.'):
    """The notebook's competition: the one recorded here, else attached (Kaggle), else the sample written here
    (smoke mode), else downloaded."""
    ws = Path(workdir)
    if (ws / competition.WORKSPACE_FILE).exists(): return competition.find(workdir=ws)
    if smoke and not (kernel.in_kaggle_notebook() and kernel.attached(name, ws)):
        path = ws / SAMPLE_DIR
        if not (path / 'train.csv').exists(): sample.write_sample(path, scale=SMOKE_SCALE)
        comp = competition.load(path, name=name)
        competition.record(comp, ws)
        return comp
    return kaggle.setup(name, workdir=ws)


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
