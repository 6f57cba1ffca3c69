"""The `comp` command line: thin typer commands that call the library and print. No logic lives here."""
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .errors import CompError, ConfigError

app = typer.Typer(help='comp: a Kaggle image-classification competition from data to leaderboard with fastai and timm.',
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

DATA = typer.Option(None, '--data', help='Competition folder (default: the one `comp sample`/`comp setup` recorded here).')


def _table(rows, cols=None):
    if not rows: return '(none)'
    cols = cols or list(rows[0])
    cell = lambda v: '-' if v is None else (f'{v:.4f}' if isinstance(v, float) else str(v))
    w = {c: max(len(c), *(len(cell(r.get(c))) for r in rows)) for c in cols}
    lines = ['  '.join(c.ljust(w[c]) for c in cols)]
    lines += ['  '.join(cell(r.get(c)).ljust(w[c]) for c in cols) for r in rows]
    return '\n'.join(lines)


def _renamed(rec):
    if Path(rec['submission']).stem != rec['asked_name']:
        typer.echo(f'note: submissions/{rec["asked_name"]}.csv already holds other predictions, kept as they are; '
                   f'these are in {rec["submission"]}')


@app.command()
def sample(dir: Path = typer.Argument(..., help='Folder to write the competition into (new or empty).'),
           scale: str = typer.Option('small', help='small (tens per label), full (10,407/3,469) or a fraction.'),
           seed: int = typer.Option(42, help='Random seed: the same seed writes the same files.')):
    """Write a synthetic competition in Paddy Doctor's exact layout and record it for this folder.

    Example: comp sample paddy-sample --scale full"""
    from .competition import WORKSPACE_FILE
    from .sample import sample as write_sample
    path = write_sample(dir, scale=scale, seed=seed)
    typer.echo(f'wrote the sample competition to {path} (recorded in {WORKSPACE_FILE})')


@app.command()
def demo(dir: Path = typer.Option(Path('demo'), '--dir', help='Folder for the sample data, runs and submissions.'),
         seed: int = typer.Option(42, help='Random seed for the sample and the run.')):
    """Run the whole job on the built-in sample: data, training, prediction, a scored submission."""
    from .demo import demo as run_demo
    res = run_demo(dir, seed=seed)
    for r in res['runs']:
        typer.echo(f'run {r["run"].name}: accuracy {r["accuracy"]:.4f} (with TTA {r["accuracy_tta"]:.4f})')
    typer.echo(f'ensemble accuracy: {res["accuracy"]:.4f}')
    typer.echo(f'submission: {res["submission"]}')
    typer.echo(f'accuracy: {res["accuracy"]:.4f}')


@app.command()
def train(arch: str = typer.Option('convnext_small', help='A recipe from `comp zoo` or any timm model name.'),
          data: Optional[Path] = DATA,
          size: Optional[str] = typer.Option(None, help='Training image size, e.g. 224 or 256x192 (height x width).'),
          resize: Optional[str] = typer.Option(None, help='Item resize before augmentation: METHOD[:SIZE], METHOD squish|crop|pad, e.g. pad:480x360.'),
          bs: Optional[int] = typer.Option(None, help='Batch size per step.'),
          accum: Optional[int] = typer.Option(None, help='Gradient accumulation steps (effective batch = bs x accum).'),
          lr: Optional[str] = typer.Option(None, help='Learning rate, or auto to run lr_find and use its valley.'),
          epochs: Optional[int] = typer.Option(None, help='Epochs (fine_tune adds one frozen epoch).'),
          schedule: Optional[str] = typer.Option(None, help='fine_tune or one_cycle.'),
          pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained', help='Start from pretrained weights.'),
          weights: Optional[Path] = typer.Option(None, help='Pretrained weights file, or a folder of cached Hugging Face hub files.'),
          precision: str = typer.Option('auto', help='auto (bf16/fp16 on GPU, fp32 on CPU), fp32, fp16 or bf16.'),
          channels_last: bool = typer.Option(False, '--channels-last', help='Use channels-last memory format.'),
          target: str = typer.Option('disease', help='disease, or disease+variety for a two-headed model.'),
          seed: int = typer.Option(42, help='Seed of the shared validation split and of training.'),
          valid_pct: float = typer.Option(0.2, help='Validation fraction of the shared split (without --folds); 0 trains on every image, with no validation score.'),
          folds: Optional[int] = typer.Option(None, help='Use K stratified folds instead of one split.'),
          fold: int = typer.Option(0, help='Which fold validates (with --folds).'),
          workers: Optional[int] = typer.Option(None, help='Data-loading workers (default: the CPU cores).'),
          cache: bool = typer.Option(True, '--cache/--no-cache', help='Decode each image once per run (budget: COMP_DECODE_CACHE_GB, default a quarter of memory).'),
          sync_free: bool = typer.Option(False, '--sync-free', help='No per-batch read back to the CPU (losses, metrics, copies stay on the GPU).'),
          label_smoothing: float = typer.Option(0.0, help='Label smoothing eps (fastai\'s LabelSmoothingCrossEntropyFlat), e.g. 0.1; 0: off.'),
          mixup: float = typer.Option(0.0, help='MixUp alpha (fastai\'s MixUp), e.g. 0.4; 0: off.'),
          cutmix: float = typer.Option(0.0, help='CutMix alpha (fastai\'s CutMix), e.g. 1.0; 0: off.'),
          ema: float = typer.Option(0.0, help='Keep an EMA of the weights (timm\'s ModelEmaV3, warmed up) with this decay, e.g. 0.998; validate, save and predict with it. 0: off.'),
          keep: str = typer.Option('last', help='Save the last epoch\'s weights, or the best epoch\'s by validation error.'),
          average_last: int = typer.Option(0, help='Save the average of the last K epochs\' weights (timm\'s avg_checkpoints). 0: off.'),
          sizes: Optional[str] = typer.Option(None, help='Progressive resizing: the epochs split across these growing sizes, e.g. 128,192,256 (the last is --size).'),
          min_scale: Optional[float] = typer.Option(None, help='Smallest crop, as a fraction of the image area (default 0.75).'),
          max_rotate: Optional[float] = typer.Option(None, help='Largest rotation in degrees (default 10).'),
          max_zoom: Optional[float] = typer.Option(None, help='Largest zoom (default 1.1).'),
          max_lighting: Optional[float] = typer.Option(None, help='Largest brightness/contrast change (default 0.2).'),
          max_warp: Optional[float] = typer.Option(None, help='Largest perspective warp (default 0.2).'),
          flip: Optional[bool] = typer.Option(None, '--flip/--no-flip', help='Random horizontal flips (default: on).'),
          procs: Optional[int] = typer.Option(None, help='Data-parallel processes, one per GPU (CPU processes without a GPU); the effective batch is bs x accum x procs, the lr unchanged. Under torchrun / accelerate launch: theirs.'),
          resume: Optional[str] = typer.Option(None, help='Continue an interrupted run (a directory or name from `comp runs`).')):
    """Train a model and record the run under runs/.

    Example: comp train --arch convnext_small --epochs 12 (--procs 2 on two GPUs)"""
    from .train import TrainConfig, train as run_train
    cfg = TrainConfig(arch=arch, data=str(data) if data else None, size=size, resize=resize, bs=bs, accum=accum, lr=lr,
                      epochs=epochs, schedule=schedule, pretrained=pretrained, weights=str(weights) if weights else None,
                      precision=precision, channels_last=channels_last, target=target, seed=seed, valid_pct=valid_pct,
                      folds=folds, fold=fold, workers=workers, cache=cache, sync_free=sync_free,
                      label_smoothing=label_smoothing, mixup=mixup, cutmix=cutmix, ema=ema, keep=keep,
                      average_last=average_last, sizes=sizes, min_scale=min_scale, max_rotate=max_rotate,
                      max_zoom=max_zoom, max_lighting=max_lighting, max_warp=max_warp, flip=flip, procs=procs)
    run = run_train(cfg, resume=resume)
    from .distributed import is_main
    if not is_main(): return   # under a launcher, the first process speaks for the run
    typer.echo(f'run: {run}')
    err = run.result['valid_error']
    typer.echo(f'validation error: {err:.4f}' if err is not None else run.result['no_validation'])


@app.command()
def cv(arch: Optional[str] = typer.Argument(None, help='A recipe from `comp zoo` or any timm model name (not with --resume).'),
       folds: int = typer.Option(5, help='K: every fold of the shared K-fold split is trained.'),
       data: Optional[Path] = DATA,
       size: Optional[str] = typer.Option(None, help='Training image size, e.g. 224 or 256x192.'),
       bs: Optional[int] = typer.Option(None, help='Batch size per step.'),
       lr: Optional[str] = typer.Option(None, help='Learning rate, or auto.'),
       epochs: Optional[int] = typer.Option(None, help='Epochs per fold.'),
       pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained', help='Start from pretrained weights.'),
       weights: Optional[Path] = typer.Option(None, help='Pretrained weights file, or a folder of cached Hugging Face hub files.'),
       seed: int = typer.Option(42, help='Seed of the shared folds and of training.'),
       workers: Optional[int] = typer.Option(None, help='Data-loading workers (default: the CPU cores).'),
       refit: bool = typer.Option(False, '--refit', help='Then train one model on every training image with the same epochs; its test predictions join the folds\'.'),
       resume: Optional[str] = typer.Option(None, help='Finish an interrupted CV group (a name from `comp runs`); with --refit, add a refit to a finished one.')):
    """Cross-validate: train every fold, record out-of-fold and fold-averaged test probabilities, print the CV error.

    The group works wherever a run does: comp predict GROUP --tta 4, comp ensemble GROUP1 GROUP2 --search-weights.
    Example: comp cv convnext_small --folds 5 --refit"""
    from .cv import cv as run_cv
    from .train import TrainConfig
    if (arch is None) == (resume is None):
        raise ConfigError('comp cv: give an ARCH to cross-validate, or --resume GROUP to finish one (not both)')
    cfg = TrainConfig(arch=arch, data=str(data) if data else None, size=size, bs=bs, lr=lr, epochs=epochs,
                      pretrained=pretrained, weights=str(weights) if weights else None, seed=seed, workers=workers)
    group = run_cv(cfg, folds=folds, resume=resume, refit=refit, echo=lambda m: typer.echo(m, err=True))
    for m in group.members: typer.echo(f'  {m.name}: validation error {m.result["valid_error"]:.4f}')
    if group.refit is not None: typer.echo(f'  {group.refit.name}: refit on every training image (no validation score)')
    typer.echo(f'group: {group}')
    typer.echo(f'CV error: {group.result["valid_error"]:.4f} (out-of-fold, {group.result["n_valid"]} images)')


@app.command()
def auto(hours: float = typer.Option(..., help='Time budget in hours, probes to submission (a Kaggle GPU notebook may run 12).'),
         submit: bool = typer.Option(False, '--submit', help='Submit the submission to Kaggle at the end.'),
         dry_run: bool = typer.Option(False, '--dry-run', help='Probe the candidates and print the plan; train nothing.'),
         candidates: Optional[str] = typer.Option(None, help='Recipes to choose from, best first, comma-separated (default: the large and small zoo recipes).'),
         folds: int = typer.Option(5, help='Most folds a CV step uses (fewer when time is short; 1: the single shared split).'),
         tta: int = typer.Option(4, help='TTA passes when they fit in the budget (0: none).'),
         refit: bool = typer.Option(False, '--refit', help='Each CV step also trains a model on every training image (comp cv --refit), planned within the budget.'),
         message: Optional[str] = typer.Option(None, '-m', '--message', help='The submission\'s description on Kaggle (default: the plan).'),
         data: Optional[Path] = DATA,
         size: Optional[str] = typer.Option(None, help='Training image size for every candidate (default: each recipe\'s).'),
         pretrained: Optional[bool] = typer.Option(None, '--pretrained/--no-pretrained', help='Start from pretrained weights.'),
         weights: Optional[Path] = typer.Option(None, help='A folder of cached Hugging Face hub files with the candidates\' weights.'),
         seed: int = typer.Option(42, help='Seed of the shared split and folds, and of training.'),
         workers: Optional[int] = typer.Option(None, help='Data-loading workers (default: the CPU cores).')):
    """Within a time budget: probe each candidate recipe here, plan recipes, folds and epochs that fit, train them
    (resumable: run it again to continue), ensemble with searched weights, write the submission.

    The plan is printed and saved in auto/plan.json. Example: comp auto --hours 11.5 --submit"""
    from .auto import auto as run_auto
    opts = {k: v for k, v in dict(size=size, pretrained=pretrained, weights=str(weights) if weights else None,
                                  workers=workers).items() if v is not None}
    out = run_auto(hours, candidates=candidates, folds=folds, submit=submit, dry_run=dry_run, tta=tta, message=message,
                   data=str(data) if data else None, seed=seed, echo=typer.echo, refit=refit, **opts)
    if out.get('dry_run'):
        typer.echo(f'plan saved in auto/plan.json; nothing trained (--dry-run)')
        return
    typer.echo(f'done in {out["elapsed_s"] / 60:.1f} min of {out["budget_s"] / 60:.1f}: {out["submission"]}')


@app.command()
def predict(run: str = typer.Argument(..., help='A run directory or name from `comp runs`.'),
            tta: int = typer.Option(0, help='Test-time augmentation passes (0: none; fastai uses 4).'),
            beta: float = typer.Option(0.25, help='Weight of the plain pass in TTA.'),
            name: Optional[str] = typer.Option(None, help='Submission name (default: the run name).')):
    """Predict the test set with a run and write a validated submission to submissions/."""
    from .predict import predict as run_predict
    rec = run_predict(run, tta=tta, beta=beta, name=name)
    _renamed(rec)
    if rec['valid_error_tta'] is not None:
        typer.echo(f'validation error: {rec["valid_error"]:.4f} plain, {rec["valid_error_tta"]:.4f} with TTA')
    typer.echo(f'submission: {rec["submission"]}')


@app.command()
def score(file: Path = typer.Argument(..., help='A submission CSV.'), data: Optional[Path] = DATA):
    """Print a submission's accuracy against the competition's solution.csv (sample or holdout)."""
    from .submission import score as run_score
    typer.echo(f'accuracy: {run_score(file, data):.4f}')


@app.command()
def validate(file: Path = typer.Argument(..., help='A submission CSV.'), data: Optional[Path] = DATA):
    """Check a submission against the competition's sample submission and list every problem."""
    from .submission import validate as run_validate
    df = run_validate(file, data)
    typer.echo(f'{file}: valid ({len(df)} rows)')


@app.command()
def ensemble(run: List[str] = typer.Argument(..., help='Two or more run directories or names from `comp runs`.'),
             blend: Optional[str] = typer.Option(None, help='Comma-separated blend weights, one per run (default: equal).'),
             search_weights: bool = typer.Option(False, '--search-weights', help='Pick weights that minimise validation error.'),
             tta: int = typer.Option(0, help='Use each run\'s TTA predictions with this many passes.'),
             beta: float = typer.Option(0.25, help='Weight of the plain pass in TTA.'),
             name: Optional[str] = typer.Option(None, help='Submission name.')):
    """Average the probabilities of runs that share a vocab and write the ensemble's submission.

    Example: comp ensemble RUN1 RUN2 RUN3 --tta 4 --search-weights"""
    from .ensemble import ensemble as run_ensemble
    out = run_ensemble(run, blend=blend, name=name, tta=tta, beta=beta, search_weights=search_weights)
    _renamed(out)
    for r, e in zip(out['runs'], out.get('run_valid_errors', [None] * len(out['runs']))):
        typer.echo(f'  {r}: validation error {"-" if e is None else f"{e:.4f}"}')
    typer.echo('weights: ' + ', '.join(f'{w:.3f}' for w in out['weights']))
    if 'valid_error' in out:
        typer.echo(f'ensemble validation error: {out["valid_error"]:.4f} (equal weights: {out["equal_weights_error"]:.4f})')
    else:
        typer.echo('no ensemble validation error: the runs do not share a validation split')
    typer.echo(f'submission: {out["submission"]}')


@app.command()
def holdout(dir: Path = typer.Argument(..., help='Folder for the new local competition (new or empty).'),
            frac: float = typer.Option(0.25, help='Fraction of the training images that become the test set.'),
            seed: int = typer.Option(42, help='Seed of the stratified split.'),
            data: Optional[Path] = DATA):
    """Turn a competition's training set into a local competition with a solution.csv, to score offline."""
    from .holdout import holdout as make_holdout
    path = make_holdout(dir, frac=frac, seed=seed, data=data)
    typer.echo(f'wrote the holdout competition to {path}; use it with --data {path} or `comp score`')


@app.command()
def pseudo(submission: Path = typer.Argument(..., help='A submission from comp predict or comp ensemble (its .json record names the runs).'),
           threshold: float = typer.Option(0.9, help='Smallest probability of the predicted label for a test image to join training.'),
           dest: Optional[Path] = typer.Option(None, help='Folder for the derived competition (default: ./pseudo-<submission>-p<threshold>).')):
    """Pseudo-labels: a local competition whose training set adds the test images the submission's models are sure of.

    The shared split and folds stay the real images'; pseudo-labelled images never validate.
    Example: comp pseudo submissions/ensemble.csv --threshold 0.95, then comp cv convnext_small --data DEST"""
    from .pseudo import pseudo as make_pseudo
    path, n = make_pseudo(submission, threshold=threshold, dest=dest)
    typer.echo(f'wrote {path}: {n} test images pseudo-labelled (probability >= {threshold:g}); train on it with --data {path}')


@app.command()
def resize(size: int = typer.Option(256, help='Longest side of the resized images, in pixels.'),
           data: Optional[Path] = DATA,
           workers: Optional[int] = typer.Option(None, help='Parallel processes (default: the CPU cores).')):
    """Make (or bring up to date) a pre-resized copy of the images; `comp train` uses it when it is big enough."""
    from .resize import resize as run_resize
    path, n = run_resize(size, data, workers=workers)
    typer.echo(f'{path}: {n} images resized ({"up to date" if n == 0 else "done"})')


@app.command()
def setup(competition: str = typer.Argument('paddy-disease-classification', help='The Kaggle competition name.'),
          path: Optional[Path] = typer.Option(None, help='Where to put the data (default: ./COMPETITION).')):
    """Get a competition's data (attached in a Kaggle notebook, else downloaded once), validate and record it."""
    from .kaggle import setup as run_setup
    comp = run_setup(competition, path=path)
    typer.echo(f'{comp.name}: {len(comp.train_df())} training images, {len(comp.test_ids())} test images in {comp.path}')


@app.command()
def submit(file: Path = typer.Argument(..., help='A submission CSV (from submissions/).'),
           message: str = typer.Option(..., '-m', '--message', help='The submission\'s description on Kaggle.'),
           dry_run: bool = typer.Option(False, '--dry-run', help='Only validate the file.'),
           wait: int = typer.Option(300, help='Seconds to wait for Kaggle\'s score.'),
           data: Optional[Path] = DATA):
    """Validate a submission, upload it to Kaggle, wait for its public score and record it in its sidecar.

    Example: comp submit submissions/RUN.csv -m "convnext_small, 12 epochs, TTA"
    """
    from .kaggle import submit as run_submit
    rec = run_submit(file, message, wait=wait, dry_run=dry_run, echo=lambda m: typer.echo(m, err=True), data=data)
    if rec.get('dry_run'):
        typer.echo(f'{file}: valid; not submitted (--dry-run)')
        return
    score = rec['public_score'] if rec['public_score'] is not None else 'not yet scored'
    typer.echo(f'submitted {file} to {rec["competition"]} (ref {rec["ref"]}): {rec["status"]}, public score {score}')


@app.command()
def submissions(data: Optional[Path] = DATA):
    """List this competition's Kaggle submissions with their scores and the runs behind each."""
    from .kaggle import submissions as list_subs
    typer.echo(_table(list_subs(data=data), ['ref', 'date', 'message', 'status', 'public_score', 'runs']))


@app.command('push-notebook')
def push_notebook(nb: Path = typer.Argument(..., help='A notebook from nbs/.'),
                  gpu: bool = typer.Option(True, '--gpu/--no-gpu', help='Run it on a Kaggle GPU.'),
                  private: bool = typer.Option(True, '--private/--public', help='Kernel visibility.'),
                  internet: bool = typer.Option(False, '--internet/--no-internet',
                                                help='Give the kernel internet (Paddy Doctor allows it; code competitions do not).'),
                  weights: Optional[str] = typer.Option(None, help='Weights dataset to attach without internet (default: USER/comp-weights).')):
    """Push a notebook as a Kaggle kernel with the competition attached and comp installable offline.

    Example: comp push-weights resnet26d && comp push-notebook nbs/01-first-steps.ipynb --no-internet"""
    from .kaggle import push_notebook as push
    out = push(nb, gpu=gpu, private=private, internet=internet, weights=weights, echo=lambda m: typer.echo(m, err=True))
    typer.echo(f'pushed {out["kernel"]} (version {out["version"]}, internet {"on" if out["internet"] else "off"}) '
               f'with datasets {", ".join(out["datasets"])}: {out["url"]}')


@app.command('push-weights')
def push_weights(arch: List[str] = typer.Argument(..., help='Recipes from `comp zoo` or timm model names.'),
                 dataset: Optional[str] = typer.Option(None, help='Dataset to push to (default: USER/comp-weights).')):
    """Push the recipes' pretrained weights (Hugging Face hub cache files) as a Kaggle dataset for offline notebooks.

    Example: comp push-weights convnext_large vit_large swin_large swinv2_large"""
    from .kaggle import push_weights as push
    out = push(arch, dataset=dataset, echo=lambda m: typer.echo(m, err=True))
    typer.echo(f'pushed {out["dataset"]} with the weights of {", ".join(out["archs"])}')


@app.command()
def runs(json_: bool = typer.Option(False, '--json', help='Print JSON for scripts.'),
         folds: bool = typer.Option(False, '--folds', help='List the fold runs of CV groups too.')):
    """List the runs here, best validation error first (a CV group is one row)."""
    from .runs import table
    rows = table('.', folds=folds)
    if json_:
        import json
        typer.echo(json.dumps(rows, indent=2))
    else:
        typer.echo(_table(rows))


@app.command()
def zoo():
    """Print the model recipes (any timm model name works too)."""
    from .zoo import RECIPES
    typer.echo(_table([r.row() for r in RECIPES.values()]))


def main():
    """Entry point: user errors print one line and exit 1; COMP_DEBUG=1 shows the traceback."""
    usage, abort = _click_exceptions()
    debug = bool(os.environ.get('COMP_DEBUG'))
    for c in app.registered_commands: c.callback = _interruptible(c.callback)
    if not debug:
        # Library deprecation chatter (torch.jit, timm aliases) is not the user's to act on.
        import warnings
        for cat in (FutureWarning, DeprecationWarning, UserWarning): warnings.filterwarnings('ignore', category=cat)
    try:
        # Not standalone: click would turn Ctrl-C into its own Abort and exit before comp's handler sees it.
        code = app(standalone_mode=False)
    except usage as e:  # usage errors: click's own message and exit code
        e.show()
        sys.exit(e.exit_code)
    except (Interrupted, KeyboardInterrupt, *abort) as e:
        if debug: raise
        run = next((getattr(x, 'comp_run') for x in _chain(e) if hasattr(x, 'comp_run')), None)
        print('interrupted' + (f': resume with `comp train --resume {run}`' if run else ''), file=sys.stderr)
        sys.exit(130)
    except Exception as e:
        if debug: raise
        print(f'error: {describe(e)}', file=sys.stderr)
        sys.exit(1)
    if code == 130: print('interrupted', file=sys.stderr)  # typer's conversion of a Ctrl-C outside a command
    sys.exit(code if isinstance(code, int) else 0)


class Interrupted(Exception):
    """Ctrl-C inside a command, carried past typer (which turns a KeyboardInterrupt into a silent exit 130)."""


def _interruptible(f):
    import functools
    if getattr(f, 'interruptible', False): return f
    @functools.wraps(f)
    def g(*args, **kwargs):
        try: return f(*args, **kwargs)
        except KeyboardInterrupt as e: raise Interrupted() from e
    g.interruptible = True
    return g


def _click_exceptions():
    """(usage errors, aborts) as click raises them: typer may carry its own copy of click."""
    mods = []
    try:
        from typer._click import exceptions
        mods.append(exceptions)
    except ImportError: pass
    try:
        import click.exceptions
        mods.append(click.exceptions)
    except ImportError: pass
    return tuple(m.ClickException for m in mods), (typer.Abort, *(m.Abort for m in mods if hasattr(m, "Abort")))


def _chain(e):
    while e is not None:
        yield e
        e = e.__cause__ or e.__context__


def describe(e):
    """One line for any exception: a CompError's message; what a failed write means; else its type."""
    import errno
    if isinstance(e, CompError): return str(e)
    if isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f'cannot write {e.filename or "a file"}: {"the disk is read-only" if e.errno == errno.EROFS else "permission denied"}; run comp in a folder you can write to'
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f'no room left on the disk writing {e.filename or "a file"}: free some space and run the command again'
    first = (str(e).strip().splitlines() or [''])[0][:200]
    return f'unexpected {type(e).__name__}{": " + first if first else ""} (set COMP_DEBUG=1 to see the traceback)'


if __name__ == '__main__':
    main()
