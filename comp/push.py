"""Pushing to Kaggle, through comp.kaggle's client: notebooks as kernels (with the competition, comp's library and
the weights or runs they need attached), and the datasets they use: comp's library, pretrained weights, and runs for an
inference notebook. What was pushed from here is recorded in comp's state folder."""
import json
import shutil
import tempfile
from pathlib import Path

from . import competition, kernel, wheels
from .errors import CompError, KaggleError
from .kaggle import CREDS_HELP, api, call, pushed, remember

LIB_DATASET = 'comp-lib'
WEIGHTS_DATASET = 'comp-weights'
RUNS_DATASET = 'comp-runs'


def notebook_archs(nb):
    """The recipes a notebook in nbs/ trains when not in smoke mode (its metadata's comp.archs)."""
    meta = json.loads(Path(nb).read_text()).get('metadata', {})
    return list(meta.get('comp', {}).get('archs', []))


def push_notebook(nb, gpu=True, private=True, internet=False, weights=None, wheelhouse=None, workdir='.', echo=print,
                  runs=None, kernel_source=None, submission_name=None):
    """Push `nb` as a Kaggle kernel with the competition and the library dataset attached (pushed first).

    With internet off, every pretrained weight it needs comes from the weights dataset (`weights`, default
    USER/comp-weights), which `push_weights` must have filled with the notebook's recipes. An inference notebook
    (nbs/06) gets the runs to predict with: the dataset `runs` (default: USER/comp-runs once `push_runs` pushed it),
    or another notebook's output (`kernel_source`, USER/SLUG); `submission_name` is the ensemble it repeats."""
    from fastkaggle.core import nb_meta
    nb = Path(nb)
    if not nb.is_file(): raise KaggleError(f'{nb}: no such notebook (they live in nbs/, e.g. nbs/01-first-steps.ipynb)')
    comp = competition.find(workdir=workdir, check_images=False)
    a = api()
    user = a.config_values.get(a.CONFIG_NAME_USER)
    if not user: raise KaggleError(f'no Kaggle username known: {CREDS_HELP}')
    datasets = []
    if not internet:
        slug = weights or f'{user}/{WEIGHTS_DATASET}'
        missing = _missing_weights(slug, notebook_archs(nb))
        if missing:
            raise KaggleError(f'{nb.name} needs pretrained weights for {", ".join(missing)} and has no internet, but '
                              f'dataset {slug} was not pushed with them: run `comp push-weights {" ".join(missing)}` '
                              'first, or push with --internet')
        if notebook_archs(nb): datasets.append(slug)
    sources = _runs_sources(nb, user, runs, kernel_source, submission_name)
    datasets += sources['datasets']
    datasets.insert(0, push_library(a, user, wheelhouse=wheelhouse, echo=echo))
    slug = nb.stem.lower().replace('_', '-')
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(nb, Path(tmp) / nb.name)
        # The notebook works on the workspace's competition, scored by its metric (offline, the API cannot say).
        kernel.set_parameter(Path(tmp) / nb.name, 'competition', comp.name)
        kernel.set_parameter(Path(tmp) / nb.name, 'metric', comp.metric)
        if sources['submission']: kernel.set_parameter(Path(tmp) / nb.name, 'submission', sources['submission'])
        meta = nb_meta(user, slug, nb.stem.replace('_', ' ').replace('-', ' ').title(), nb.name,
                       private=private, gpu=gpu, internet=internet, linked_datasets=datasets)
        meta['competition_sources'] = [comp.name]  # Kaggle's kernel metadata takes competition slugs
        meta['kernel_sources'] = sources['kernels']
        (Path(tmp) / 'kernel-metadata.json').write_text(json.dumps(meta, indent=2))
        res = call(f'push notebook {nb.name}', a.kernels_push, tmp)
    if getattr(res, 'error', None): raise KaggleError(f'Kaggle refused the notebook: {res.error}')
    out = {'kernel': f'{user}/{slug}', 'url': getattr(res, 'url', None), 'version': getattr(res, 'version_number', None),
           'dataset': datasets[0], 'datasets': datasets, 'internet': internet, 'kernel_sources': sources['kernels'],
           'submission': sources['submission'], 'runs': sources['runs']}
    remember('kernels', out['kernel'], lambda old: [*(old or []), {k: out[k] for k in ('version', 'submission', 'runs', 'datasets', 'kernel_sources')}])
    return out


def _runs_sources(nb, user, runs, kernel_source, submission_name):
    """What an inference notebook predicts with: {'datasets', 'kernels', 'submission', 'runs'}; nothing for others."""
    none = {'datasets': [], 'kernels': [], 'submission': None, 'runs': []}
    if not json.loads(Path(nb).read_text()).get('metadata', {}).get('comp', {}).get('inference'):
        if runs or kernel_source or submission_name:
            raise CompError(f'{Path(nb).name} trains its own runs: --runs, --kernel-source and --submission are for the '
                            'inference notebook (nbs/06-inference.ipynb)')
        return none
    if kernel_source:
        if kernel_source.count('/') != 1: raise CompError(f'--kernel-source {kernel_source}: give the notebook as USER/SLUG')
        if not submission_name: raise CompError('name the submission the notebook repeats with --submission NAME '
                                                f'(one that {kernel_source} wrote in its submissions/)')
        return {**none, 'kernels': [kernel_source], 'submission': submission_name}
    slug = runs or f'{user}/{RUNS_DATASET}'
    manifest = pushed().get(slug)
    if manifest is None:
        raise KaggleError(f'{Path(nb).name} predicts with pushed runs, and dataset {slug} was not pushed from here: run '
                          '`comp push-runs SUBMISSION` first, or attach a training notebook\'s output with --kernel-source USER/SLUG')
    name = submission_name or manifest.get('default')
    subs = manifest.get('submissions', {})
    if name in subs: behind = subs[name]['runs']
    elif name in manifest.get('runs', {}): behind = [name]
    else:
        raise CompError(f'dataset {slug} holds no submission or run {name!r}: push it with `comp push-runs {name}`'
                        if name else f'dataset {slug} holds runs but no submission: name one with --submission RUN')
    return {**none, 'datasets': [slug], 'submission': name, 'runs': behind}


def _push_dataset(a, slug, folder, comment, dir_mode='zip', echo=print):
    """Push `folder` as the dataset `slug`: a new version if it exists, else a new private dataset."""
    (Path(folder) / 'dataset-metadata.json').write_text(json.dumps(
        {'title': slug.split('/')[1], 'id': slug, 'licenses': [{'name': 'CC0-1.0'}]}))
    try:
        res = call(f'update dataset {slug}', a.dataset_create_version, str(folder), comment, quiet=True, dir_mode=dir_mode)
    except KaggleError as e:
        if '(404)' not in str(e): raise
        echo(f'creating dataset {slug}')
        res = call(f'create dataset {slug}', a.dataset_create_new, str(folder), public=False, quiet=True, dir_mode=dir_mode)
    if getattr(res, 'error', None): raise KaggleError(f'Kaggle refused dataset {slug}: {res.error}')
    return slug


def push_library(a, user, wheelhouse=None, echo=print):
    """Push comp's wheel and the wheels Kaggle lacks (fastkaggle's library datasets) as USER/comp-lib."""
    slug = f'{user}/{LIB_DATASET}'
    with tempfile.TemporaryDirectory() as tmp:
        files = wheels.library_files(tmp, wheelhouse)
        return _push_dataset(a, slug, tmp, f'comp and {len(files) - 1} wheels', echo=echo)


def push_runs(names, dataset=None, workdir='.', echo=print):
    """Pack what prediction needs of `names` (runs, CV groups, submissions: exactly the ensemble behind a submission)
    as the dataset USER/comp-runs (or `dataset`), for an inference notebook; a new version keeps what earlier pushes
    from here put in it and adds what changed, and a push that would change nothing is skipped. Return the manifest."""
    from . import bundle
    if not names: raise CompError('name the submissions, runs or CV groups to push, e.g. comp push-runs ensemble-3runs')
    bundle.sources(names, workdir)   # every name checked before Kaggle is asked anything
    a = api()
    user = a.config_values.get(a.CONFIG_NAME_USER)
    if not user: raise KaggleError(f'no Kaggle username known: {CREDS_HELP}')
    slug = dataset or f'{user}/{RUNS_DATASET}'
    if slug.count('/') != 1: raise CompError(f'--dataset {slug}: give it as USER/SLUG')
    prev = pushed().get(slug)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = bundle.pack(names, tmp, workdir, keep=prev)
        added = [r for r, files in manifest['runs'].items() if (prev or {}).get('runs', {}).get(r) != files]
        if bundle.same(prev, manifest):
            echo(f'{slug} already holds these runs and submissions: nothing pushed')
            return {'dataset': slug, 'pushed': False, 'added': [], **manifest}
        _push_dataset(a, slug, tmp, f'runs: {", ".join(added) or "submissions only"}', dir_mode='tar', echo=echo)
    remember('datasets', slug, lambda old: manifest)
    return {'dataset': slug, 'pushed': True, 'added': added, **manifest}


def _missing_weights(slug, archs):
    from . import zoo
    have = pushed().get(slug, {}).get('archs', {})
    return [a for a in archs if zoo.recipe(a).pretrained and zoo.recipe(a).arch not in have]


def push_weights(archs, dataset=None, echo=print):
    """Pack the pretrained weights of `archs` (recipes or timm names) as the dataset USER/comp-weights (or
    `dataset`), for notebooks pushed with internet off; return its slug and what it holds."""
    from . import zoo
    if not archs: raise CompError('name the recipes whose weights to push, e.g. comp push-weights convnext_small vit_small')
    sources = zoo.hub_sources(archs)   # what the downloads need, and the credentials, checked before any download
    a = api()
    user = a.config_values.get(a.CONFIG_NAME_USER)
    if not user: raise KaggleError(f'no Kaggle username known: {CREDS_HELP}')
    slug = dataset or f'{user}/{WEIGHTS_DATASET}'
    with tempfile.TemporaryDirectory() as tmp:
        manifest = zoo.pack_weights(sources, tmp)
        # Weights do not compress: tar uploads each repo folder as it is, and Kaggle unpacks it.
        _push_dataset(a, slug, tmp, f'weights of {", ".join(archs)}', dir_mode='tar', echo=echo)
    remember('datasets', slug, lambda old: manifest)  # a version replaces the dataset's files: it holds exactly these
    return {'dataset': slug, **manifest}
