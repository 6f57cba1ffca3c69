"""The `comp` command line: thin typer commands that call the library and print, their training options built
from comp.config's TrainConfig fields, and the one handler that turns an error into one line."""
import functools
import inspect
import os
import sys
from dataclasses import fields
from pathlib import Path
from typing import List, Optional

import typer

from .blending import ROUNDS
from .config import BETA, TrainConfig, given
from .errors import describe
from .sample import LIKES

app = typer.Typer(help='comp: a Kaggle image-classification competition from data to leaderboard with fastai and timm.',
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)

FIELDS = {f.name: f for f in fields(TrainConfig)}


def _option(name):
    """A typer option for TrainConfig field `name`: its default, help and flag."""
    f = FIELDS[name]
    return typer.Option(f.default, *([f.metadata['flag']] if f.metadata['flag'] else []), help=f.metadata['help'])


def _type(name):
    """The type the command line reads field `name` as (a path for folders and files; optional where None is its default)."""
    f = FIELDS[name]
    cli = f.metadata['cli'] or type(f.default)
    cli = Path if cli == 'path' else cli
    return Optional[cli] if f.default is None else cli


def training_options(*names):
    """Give a command TrainConfig's fields `names` (default: all) as options, and call it with them as one TrainConfig,
    its `cfg` argument: so train, cv and auto share each setting's default, help and flag."""
    names = names or tuple(FIELDS)
    def deco(f):
        sig = inspect.signature(f)
        own = [p for p in sig.parameters.values() if p.name != 'cfg']
        args = [p for p in own if isinstance(p.default, typer.models.ArgumentInfo)]
        opts = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=_option(n), annotation=_type(n)) for n in names]
        own = args + opts + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p not in args]
        @functools.wraps(f)
        def command(**kw):
            cfg = TrainConfig(**{n: str(v) if isinstance(v, Path) else v for n, v in ((n, kw.pop(n)) for n in names)})
            return f(cfg=cfg, **kw)
        command.__signature__ = sig.replace(parameters=own)
        command.__annotations__ = {p.name: p.annotation for p in own}
        return command
    return deco


DATA = _option('data')


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
           scale: str = typer.Option('small', help='small (tens per label), full (the real competition\'s sizes, '
                                     'such as Paddy Doctor\'s 10,407/3,469) or a fraction of them.'),
           seed: int = typer.Option(42, help='Random seed: the same seed writes the same files.'),
           like: Optional[str] = typer.Option(None, '--like', help='The Kaggle competition whose download layout to '
                                              'copy: ' + '; '.join(f'{n} ({like.kind})' for n, like in LIKES.items()))):
    """Write a synthetic competition in a Kaggle competition's exact layout (Paddy Doctor's by default), with its
    hidden answers in solution.csv, and record it for this folder.

    Example: comp sample cassava-sample --like cassava-leaf-disease-classification"""
    from .competition import WORKSPACE_FILE
    from .sample import like_name, sample as write_sample
    like = like_name(like)
    path = write_sample(dir, scale=scale, seed=seed, like=like)
    typer.echo(f'wrote a sample competition in {like}\'s layout to {path} (recorded in {WORKSPACE_FILE})')


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
@training_options()
def train(cfg, resume: Optional[str] = typer.Option(None, help='Continue an interrupted run (a directory or name from `comp runs`).')):
    """Train a model and record the run under runs/.

    Example: comp train --arch convnext_small --epochs 12 (--procs 2 on two GPUs)"""
    from .distributed import is_main
    from .train import train as run_train
    run = run_train(cfg, resume=resume)
    if is_main(): _trained(run)   # under a launcher, the first process speaks for the run


def _trained(run):
    typer.echo(f'run: {run}')
    err, m = run.result['valid_error'], run.result.get('metric')
    typer.echo(f'validation error: {err:.4f}{_metric_note(m, err)}' if err is not None else run.result['no_validation'])


def _metric_note(metric, err):
    """What a validation error (lower is better) is in the competition's own metric, when that is not accuracy."""
    return f' ({metric} {_score(metric, err)})' if metric and metric != 'accuracy' else ''


@app.command()
@training_options(*(n for n in FIELDS if n != 'teacher'))
def distill(cfg, source: str = typer.Argument(..., metavar='TEACHER', help='The teacher: a submission (an ensemble) of CV groups, or a CV group.')):
    """Train a student with soft targets from a teacher's out-of-fold probabilities (KL at --distill-t, blended with
    the hard label by --distill-alpha), recorded as a normal run whose config names the teacher. With --distill-test
    it also trains on the test images, the teacher's test probabilities their only target.

    Example: comp distill submissions/ensemble-3runs-GROUP.csv --arch convnext_tiny (comp cv ARCH --teacher T: a group)"""
    from dataclasses import replace
    from .train import train as run_train
    _trained(run_train(replace(cfg, teacher=source)))


@app.command()
@training_options('data', 'size', 'bs', 'lr', 'epochs', 'pretrained', 'weights', 'seed', 'workers', 'drop', 'tracker',
                  'teacher', 'distill_t', 'distill_alpha', 'distill_test')
def cv(cfg, arch: Optional[str] = typer.Argument(None, help='A recipe from `comp zoo` or any timm model name (not with --resume).'),
       folds: Optional[int] = typer.Option(None, help='K: every fold of the shared K-fold split is trained (default 5).'),
       refit: bool = typer.Option(False, '--refit', help='Then train one model on every training image with the same epochs; its test predictions join the folds\'.'),
       resume: Optional[str] = typer.Option(None, help='Finish an interrupted CV group (a name from `comp runs`); with --refit, add a refit to a finished one.')):
    """Cross-validate: train every fold, record out-of-fold and fold-averaged test probabilities, print the CV error.

    The group works wherever a run does: comp predict GROUP --tta 4, comp ensemble GROUP1 GROUP2 --search-weights.
    Example: comp cv convnext_small --folds 5 --refit"""
    from dataclasses import replace
    from .cv import cv as run_cv
    # options given with --resume reach cv, which refuses them; without ARCH or --resume it says to give one
    cfg = replace(cfg, arch=arch) if arch is not None else cfg if given(cfg) and resume is not None else None
    group = run_cv(cfg, folds=folds, resume=resume, refit=refit, echo=lambda m: typer.echo(m, err=True))
    for m in group.members: typer.echo(f'  {m.name}: validation error {m.result["valid_error"]:.4f}')
    if group.refit is not None: typer.echo(f'  {group.refit.name}: refit on every training image (no validation score)')
    typer.echo(f'group: {group}')
    m = group.result.get('metric')
    typer.echo(f'CV error: {group.result["valid_error"]:.4f}{_metric_note(m, group.result["valid_error"])} '
               f'(out-of-fold, {group.result["n_valid"]} images)')


@app.command()
@training_options('data', 'size', 'pretrained', 'weights', 'seed', 'workers', 'drop', 'tracker')
def auto(cfg, hours: float = typer.Option(..., help='Time budget in hours, probes to submission (a Kaggle GPU notebook may run 12).'),
         submit: bool = typer.Option(False, '--submit', help='Submit the submission to Kaggle at the end.'),
         dry_run: bool = typer.Option(False, '--dry-run', help='Probe the candidates and print the plan; train nothing.'),
         candidates: Optional[str] = typer.Option(None, help='Recipes to choose from, best first, comma-separated (default: the large and small zoo recipes).'),
         folds: int = typer.Option(5, help='Most folds a CV step uses (fewer when time is short; 1: the single shared split).'),
         tta: int = typer.Option(4, help='TTA passes when they fit in the budget (0: none).'),
         refit: bool = typer.Option(False, '--refit', help='Each CV step also trains a model on every training image (comp cv --refit), planned within the budget.'),
         message: Optional[str] = typer.Option(None, '-m', '--message', help='The submission\'s description on Kaggle (default: the plan).')):
    """Within a time budget: probe each candidate recipe here, plan recipes, folds and epochs that fit, train them
    (resumable: run it again to continue), ensemble with searched weights, write the submission.

    The plan is printed and saved in auto/plan.json. Example: comp auto --hours 11.5 --submit"""
    from .auto import auto as run_auto
    options = given(cfg)
    out = run_auto(hours, candidates=candidates, folds=folds, submit=submit, dry_run=dry_run, tta=tta, message=message,
                   data=options.pop('data', None), echo=typer.echo, refit=refit, **options)
    if out.get('dry_run'):
        typer.echo('plan saved in auto/plan.json; nothing trained (--dry-run)')
        return
    typer.echo(f'done in {out["elapsed_s"] / 60:.1f} min of {out["budget_s"] / 60:.1f}: {out["submission"]}')


@app.command()
def predict(run: str = typer.Argument(..., help='A run directory or name from `comp runs`.'),
            tta: int = typer.Option(0, help='Test-time augmentation passes (0: none; fastai uses 4).'),
            beta: float = typer.Option(BETA, help='Weight of the plain pass in TTA.'),
            name: Optional[str] = typer.Option(None, help='Submission name (default: the run name).')):
    """Predict the test set with a run and write a validated submission to submissions/."""
    from .predict import predict as run_predict
    rec = run_predict(run, tta=tta, beta=beta, name=name)
    _renamed(rec)
    if rec['valid_error_tta'] is not None:
        m = rec['metric']
        typer.echo(f'validation {m}: {_score(m, rec["valid_error"])} plain, {_score(m, rec["valid_error_tta"])} with TTA')
    typer.echo(f'submission: {rec["submission"]}')


@app.command()
def infer(name: Optional[str] = typer.Argument(None, help='A submission (its ensemble) or run; default: the runs dataset\'s.'),
          runs_from: Path = typer.Option(Path('.'), '--runs-from', help='Folder holding runs/ and submissions/ (a pushed runs dataset, or here).'),
          time_limit: Optional[float] = typer.Option(None, '--time-limit', help='Seconds it may take: TTA passes, then the weakest members, are dropped to fit.'),
          estimate: Optional[int] = typer.Option(None, '--estimate', help='Only print the projected time for this many test images on this machine.'),
          out: Path = typer.Option(Path('.'), '--out', help='Folder for submission.csv, predictions.csv and submission.json.')):
    """Predict the test set there is now with a submission's members, weights and TTA, as the inference notebook
    of a code competition does (each image decoded once for every model); or --estimate the time it would take.

    Example: comp infer ensemble-3runs-RUN --estimate 10000"""
    from . import infer as engine
    if estimate is not None:
        e = engine.estimate(name, estimate, runs_from=runs_from, echo=lambda m: typer.echo(m, err=True))
        typer.echo(f'{e["source"]}: {e["n_images"]} images, models loaded in {e["load_s"]:.0f}s; projected ' +
                   ', '.join(f'{s:.0f}s with TTA {t}' for t, s in e['projected_s'].items()))
        return
    rec = engine.predict(name, runs_from=runs_from, out=out, time_limit=time_limit, echo=lambda m: typer.echo(m, err=True))
    typer.echo(f'submission: {rec["submission"]} ({rec["n_images"]} images, {len(rec["runs"])} members, TTA {rec["tta"]})')


def _score(metric, err):
    """A recorded error (lower is better) shown as the metric's own value."""
    from .metrics import to_error
    return '-' if err is None else f'{to_error(metric, err):.4f}'   # to_error is its own inverse


@app.command()
def score(file: Path = typer.Argument(..., help='A submission CSV.'), data: Optional[Path] = DATA):
    """Print a submission's score, in the competition's metric, against its solution.csv (sample or holdout)."""
    from .competition import find
    from .submission import score as run_score
    value = run_score(file, data)
    typer.echo(f'{find(data, check_images=False).metric}: {value:.4f}')


@app.command()
def validate(file: Path = typer.Argument(..., help='A submission CSV.'), data: Optional[Path] = DATA):
    """Check a submission against the competition's sample submission and list every problem."""
    from .submission import validate as run_validate
    df = run_validate(file, data)
    typer.echo(f'{file}: valid ({len(df)} rows)')


@app.command()
def ensemble(run: List[str] = typer.Argument(..., help='Two or more run directories or names from `comp runs`.'),
             method: Optional[str] = typer.Option(None, help='average (equal or --blend weights), search (weights searched on validation), '
                                                  'greedy (Caruana\'s selection with replacement), stack (a logistic or ridge regression on the members\' outputs). Default: average.'),
             blend: Optional[str] = typer.Option(None, help='Comma-separated blend weights, one per run (default: equal).'),
             search_weights: bool = typer.Option(False, '--search-weights', help='Pick weights that minimise validation error (--method search).'),
             rounds: int = typer.Option(ROUNDS, help='Rounds of --method greedy: members added, with replacement.'),
             tta: int = typer.Option(0, help='Use each run\'s TTA predictions with this many passes.'),
             beta: float = typer.Option(BETA, help='Weight of the plain pass in TTA.'),
             name: Optional[str] = typer.Option(None, help='Submission name.')):
    """Combine the probabilities of runs that share a vocab and write the ensemble's submission.

    search, greedy and stack learn from validation predictions of the same images (CV groups: out-of-fold).
    Example: comp ensemble RUN1 RUN2 RUN3 --tta 4 --method greedy"""
    from .ensemble import ensemble as run_ensemble
    out = run_ensemble(run, blend=blend, name=name, tta=tta, beta=beta, search_weights=search_weights, method=method, rounds=rounds)
    _renamed(out)
    m = out['metric']
    for r, e in zip(out['runs'], out.get('run_valid_errors', [None] * len(out['runs']))):
        typer.echo(f'  {r}: validation {m} {_score(m, e)}')
    if 'selection' in out:
        typer.echo(f'greedy selection ({out["rounds"]} rounds): ' + ', '.join(f'{r} x{c}' for r, c in out['selection'].items()))
    if 'stack' in out:
        s = out['stack']
        typer.echo(f'stacked {s["model"]} regression (C={s["C"]:g}), validation by {s["folds"]}-fold inner cross-validation')
    else:
        typer.echo('weights: ' + ', '.join(f'{w:.3f}' for w in out['weights']))
    if 'valid_error' in out:
        typer.echo(f'ensemble validation {m}: {_score(m, out["valid_error"])} (equal weights: {_score(m, out["equal_weights_error"])})')
    else:
        why = 'a run has no validation set (trained on every image)' if out['shared_split'] else 'the runs do not share a validation split'
        typer.echo(f'no ensemble validation error: {why}')
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
          path: Optional[Path] = typer.Option(None, help='Where to put the data (default: ./COMPETITION).'),
          metric: Optional[str] = typer.Option(None, help='The metric to use instead of the one Kaggle names: '
                                               'accuracy, log_loss, auc, mean_auc, f1_micro, f1_macro, qwk or rmse.'),
          set_: List[str] = typer.Option([], '--set', help='Override an inferred layout setting of comp.json, e.g. '
                                         '--set task=ordinal or --set label_col=diagnosis (repeatable).')):
    """Get a competition's data (attached in a Kaggle notebook, else downloaded once; archives inside unpacked once),
    infer how it is laid out and scored, and record it.

    Example: comp setup dogs-vs-cats-redux-kernels-edition --metric log_loss
    """
    from . import competition as competitions, detect
    from .kaggle import setup as run_setup
    comp = run_setup(competition, path=path, metric=metric, **detect.settings(set_))
    typer.echo(f'{comp.name}: {len(comp.train_df())} training images, {len(comp.test_ids())} test images in {comp.path}')
    for line in competitions.summary(comp): typer.echo(line)


@app.command()
def submit(file: Optional[Path] = typer.Argument(None, help='A submission CSV (from submissions/); not with --kernel.'),
           message: str = typer.Option(..., '-m', '--message', help='The submission\'s description on Kaggle.'),
           kernel: Optional[str] = typer.Option(None, '--kernel', help='Submit a notebook (USER/SLUG) to a code competition instead of a CSV.'),
           version: Optional[int] = typer.Option(None, '--version', help='The notebook version to submit (default: its latest).'),
           dry_run: bool = typer.Option(False, '--dry-run', help='Only validate the file.'),
           wait: int = typer.Option(300, help='Seconds to wait for Kaggle\'s score.'),
           data: Optional[Path] = DATA):
    """Validate a submission, upload it to Kaggle, wait for its public score and record it in its sidecar; or, with
    --kernel, submit a notebook version to a code competition (Kaggle re-runs it on the hidden test set).

    Examples: comp submit submissions/RUN.csv -m "convnext_small, 12 epochs, TTA"
              comp submit --kernel alice/06-inference --version 3 -m "3-model ensemble"
    """
    from .errors import CompError
    from .kaggle import submit as run_submit, submit_kernel
    echo = lambda m: typer.echo(m, err=True)
    if (file is None) == (kernel is None): raise CompError('give a submission CSV, or --kernel USER/SLUG for a code competition, not both')
    if kernel is not None:
        rec = submit_kernel(kernel, message, version=version, wait=wait, echo=echo, data=data)
        what = f'{kernel} version {rec["version"] if rec["version"] is not None else "(latest)"}'
    else:
        if version is not None: raise CompError('--version is for --kernel: a CSV has no versions')
        rec = run_submit(file, message, wait=wait, dry_run=dry_run, echo=echo, data=data)
        if rec.get('dry_run'):
            typer.echo(f'{file}: valid; not submitted (--dry-run)')
            return
        what = str(file)
    score = rec['public_score'] if rec['public_score'] is not None else 'not yet scored'
    typer.echo(f'submitted {what} to {rec["competition"]} (ref {rec["ref"]}): {rec["status"]}, public score {score}')


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
                  weights: Optional[str] = typer.Option(None, help='Weights dataset to attach without internet (default: USER/comp-weights).'),
                  runs: Optional[str] = typer.Option(None, '--runs', help='Inference notebook: the runs dataset to attach (default: USER/comp-runs from comp push-runs).'),
                  kernel_source: Optional[str] = typer.Option(None, '--kernel-source', help='Inference notebook: predict with the runs in this notebook\'s output (USER/SLUG) instead.'),
                  submission: Optional[str] = typer.Option(None, '--submission', help='Inference notebook: the submission (ensemble) it repeats (default: the last pushed).')):
    """Push a notebook as a Kaggle kernel with the competition attached and comp installable offline.

    Example: comp push-weights resnet26d && comp push-notebook nbs/01-first-steps.ipynb --no-internet
    Code competition: comp push-runs ENSEMBLE && comp push-notebook nbs/06-inference.ipynb"""
    from .push import push_notebook as push
    out = push(nb, gpu=gpu, private=private, internet=internet, weights=weights, echo=lambda m: typer.echo(m, err=True),
               runs=runs, kernel_source=kernel_source, submission_name=submission)
    also = f', kernel sources {", ".join(out["kernel_sources"])}' if out['kernel_sources'] else ''
    typer.echo(f'pushed {out["kernel"]} (version {out["version"]}, internet {"on" if out["internet"] else "off"}) '
               f'with datasets {", ".join(out["datasets"])}{also}: {out["url"]}')


@app.command('push-runs')
def push_runs(name: List[str] = typer.Argument(..., help='Submissions (their ensemble), runs or CV groups.'),
              dataset: Optional[str] = typer.Option(None, help='Dataset to push to (default: USER/comp-runs).')):
    """Push what prediction needs of runs (weights, configs, vocab; a submission's members, weights and TTA) as a
    Kaggle dataset, for the inference notebook of a code competition. Each push is a new version that keeps the runs
    pushed before; a push that changes nothing is skipped.

    Example: comp push-runs ensemble-3runs-RUN && comp push-notebook nbs/06-inference.ipynb"""
    from .push import push_runs as push
    out = push(name, dataset=dataset, echo=lambda m: typer.echo(m, err=True))
    if out['pushed']: typer.echo(f'pushed {out["dataset"]}: {len(out["runs"])} runs ({len(out["added"])} new or changed), '
                                 f'submissions {", ".join(out["submissions"]) or "none"}')
    else: typer.echo(f'{out["dataset"]} is up to date: nothing pushed')


@app.command('push-weights')
def push_weights(arch: List[str] = typer.Argument(..., help='Recipes from `comp zoo` or timm model names.'),
                 dataset: Optional[str] = typer.Option(None, help='Dataset to push to (default: USER/comp-weights).')):
    """Push the recipes' pretrained weights (Hugging Face hub cache files) as a Kaggle dataset for offline notebooks.

    Example: comp push-weights convnext_large vit_large swin_large swinv2_large"""
    from .push import push_weights as push
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
def report(name: List[str] = typer.Argument(None, help='Runs, CV groups or submissions (default: every run, and the runs table).'),
           out: Optional[Path] = typer.Option(None, help='Folder for the pages (default: reports/ here).')):
    """Write web pages of what runs get wrong: learning curves, confusion matrix, top losses, per-class scores.

    Example: comp report RUN; then open reports/RUN.html in a browser (no server needed)."""
    from .report import report as run_report
    page = run_report(name or (), out=out, echo=typer.echo)
    typer.echo(f'open {page}')


@app.command()
def suspects(group: str = typer.Argument(..., help='A CV group from `comp runs` (comp cv ARCH --folds 5).'),
             top: int = typer.Option(20, help='How many of the worst to print (all are written).')):
    """List the training images whose labels look wrong (cleanlab on the group's out-of-fold probabilities), worst
    first, with the label each model that did not see it suggests; written to the group's suspects.csv.

    Example: comp suspects GROUP, then comp train ... --drop runs/GROUP/suspects.csv to train without them"""
    from .report import SUSPECTS_FILE
    from .runs import find
    from .suspects import suspects as find_suspects
    df = find_suspects(group)
    g = find(group)
    typer.echo(_table(df.head(max(top, 0)).to_dict('records')))
    # A weak model's suspects are mostly its own mistakes: the group's error says how far to trust them.
    typer.echo(f'{len(df)} suspects among {g.result["n_valid"]} training images (cleanlab, out-of-fold; the group\'s '
               f'CV error is {g.result["valid_error"]:.4f}): {g.path / SUSPECTS_FILE}')


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
        # How to resume the whole job: the outermost job (a run, its CV group, comp auto) set it last.
        hint = next((getattr(x, 'comp_resume') for x in _chain(e) if hasattr(x, 'comp_resume')), None)
        print('interrupted' + (f': {hint}' if hint else ''), file=sys.stderr)
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


if __name__ == '__main__':
    main()
