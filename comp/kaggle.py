"""Everything that talks to Kaggle, through the official `kaggle` client (imported lazily, here only): credentials,
retries, downloading a competition (and unpacking the archives inside it) and its metric, submitting CSVs and
notebook versions and listing submissions. Pushing notebooks and datasets is comp.push, through `api` and `call`."""
import io
import os
import shutil
import tempfile
import time
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from . import competition, detect, kernel, submission
from .errors import CompError, DataError, DiskError, KaggleError
from .files import atomic_dir, atomic_path, no_room, read_json, state_dir, write_json

CREDS_HELP = ('set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or save kaggle.json from '
              'kaggle.com > Settings > API to ~/.kaggle/kaggle.json (in a Kaggle notebook: add them as secrets)')


def _secrets_to_env():
    # In a Kaggle notebook, credentials live in the notebook's secrets (fastkaggle's names, or the env names).
    if not kernel.in_kaggle_notebook(): return
    try:
        from kaggle_secrets import UserSecretsClient
    except ImportError: return
    client = UserSecretsClient()
    for env, names in {'KAGGLE_USERNAME': ('KAGGLE_USERNAME', 'kaggle_username'),
                       'KAGGLE_KEY': ('KAGGLE_KEY', 'kaggle_key'), 'KAGGLE_API_TOKEN': ('KAGGLE_API_TOKEN',)}.items():
        for n in names:
            if env in os.environ: break
            try: value = client.get_secret(n)
            except Exception: continue
            if value: os.environ[env] = value  # an empty secret is no credential either


def api():
    """An authenticated `KaggleApi`; a KaggleError saying where credentials go when there are none."""
    backoff(), seconds_var('COMP_KAGGLE_POLL', 5)  # comp's own variables: garbage there fails before any request
    for k in ('KAGGLE_USERNAME', 'KAGGLE_KEY', 'KAGGLE_API_TOKEN'):
        if os.environ.get(k) == '': del os.environ[k]  # set but empty is not a credential
    _secrets_to_env()
    # Asked with nothing to go on, the client ends the process (2.x) or raises as it is imported (1.6.x).
    if not _credentials_present(): raise KaggleError(f'no Kaggle credentials found: {CREDS_HELP}')
    import requests
    quiet = io.StringIO()
    # The client prints a login help when it cannot authenticate: keep that off the user's screen.
    with redirect_stdout(quiet), redirect_stderr(quiet):
        try:
            # A submodule's import runs kaggle/__init__.py first, which authenticates too (and 1.6.x raises there).
            from kaggle.api.kaggle_api_extended import KaggleApi
            a = KaggleApi()
            a.authenticate()
        except requests.RequestException:
            # An access token is checked with Kaggle at once: without a network that is a connection error.
            raise KaggleError('could not reach Kaggle to check the credentials: check the network connection') from None
        except (Exception, SystemExit) as e:
            # However the client gives up: 2.x ends with a bare exit(1), a SystemExit, or a NameError in a Jupyter
            # cell (IPython hides the `exit` builtin while a cell runs); 1.6.x raises OSError or ValueError.
            if os.environ.get('KAGGLE_API_TOKEN'):
                raise KaggleError('Kaggle did not accept the access token in KAGGLE_API_TOKEN (expired or mistyped): '
                                  'create a new one at kaggle.com > Settings > API') from None
            why = '' if isinstance(e, (SystemExit, NameError)) else f' ({type(e).__name__}: {_first_line(e)})'
            raise KaggleError(f'the Kaggle client found no usable credentials{why}: {CREDS_HELP}') from None
    return a


def _credentials_present():
    """Whether any place the kaggle client reads credentials from holds some (not whether they work): variables,
    kaggle.json in its config folder, an access token or OAuth file in ~/.kaggle."""
    if any(os.environ.get(k) for k in ('KAGGLE_API_TOKEN', 'KAGGLE_API_V1_TOKEN', 'KAGGLE_USERNAME', 'KAGGLE_KEY')):
        return True
    home = Path('~').expanduser()
    xdg = Path(os.environ.get('XDG_CONFIG_HOME') or home / '.config')
    config = os.environ.get('KAGGLE_CONFIG_DIR')
    dirs = [Path(config)] if config else [home / '.kaggle', xdg / 'kaggle']   # 2.x: the XDG folder without ~/.kaggle
    files = [d / 'kaggle.json' for d in dirs] + [home / '.kaggle' / f for f in ('access_token', 'access_token.txt',
                                                                                 'credentials.json')]
    return any(f.is_file() for f in files)


def _first_line(e):
    lines = str(e).strip().splitlines()
    return lines[0][:200] if lines else 'no message'


def seconds_var(name, default):
    """A number of seconds from the environment variable `name`; garbage there is a KaggleError naming it."""
    text = os.environ.get(name, '')
    if not text.strip(): return float(default)
    try: v = float(text)
    except ValueError: v = -1.0
    if not v >= 0: raise KaggleError(f'{name}={text!r}: use a number of seconds such as {default}, or unset it')
    return v


def backoff():
    """Seconds before the first retry of a transient failure (doubling after): `COMP_KAGGLE_BACKOFF`, default 2."""
    return seconds_var('COMP_KAGGLE_BACKOFF', 2)


def unresolvable(e):
    """Whether a requests error is a failed name lookup (no network, no DNS): retrying it cannot help."""
    import socket
    seen = set()
    stack = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen: continue
        seen.add(id(x))
        if isinstance(x, socket.gaierror): return True
        if 'NameResolutionError' in type(x).__name__ or 'Name or service not known' in str(x) \
                or 'Temporary failure in name resolution' in str(x): return True
        stack += [x.__cause__, x.__context__, getattr(x, 'reason', None), *[a for a in getattr(x, 'args', ()) if isinstance(a, BaseException)]]
    return False


def call(what, fn, *args, retries=4, **kwargs):
    """Call the kaggle client, turning HTTP and network failures into one-line KaggleErrors; retry transient ones."""
    import requests
    delay = backoff()
    for attempt in range(retries + 1):
        try:
            with redirect_stdout(io.StringIO()):
                return fn(*args, **kwargs)
        except requests.HTTPError as e:
            code = e.response.status_code if e.response is not None else None
            if code == 401: raise KaggleError(f'Kaggle rejected the credentials (401) to {what}: {CREDS_HELP}') from None
            if code == 403: raise KaggleError(f'Kaggle refused to {what} (403): accept the competition\'s rules on its '
                                              'Kaggle page and check that your API key is current') from None
            if code == 404: raise KaggleError(f'Kaggle found nothing to {what} (404): check the competition or '
                                              'dataset name, e.g. paddy-disease-classification') from None
            if code == 429: raise KaggleError(f'Kaggle\'s limit is reached (429) to {what}: daily submissions reset '
                                              'at midnight UTC; try again then') from None
            if code is not None and code < 500:
                raise KaggleError(f'Kaggle refused to {what} (HTTP {code}{_said(e.response)})') from None
            if attempt == retries: raise KaggleError(f'Kaggle failed to {what} (HTTP {code}) after {retries + 1} tries; try again later') from None
        except (requests.ConnectionError, requests.Timeout) as e:
            if unresolvable(e):
                raise KaggleError(f'could not reach Kaggle to {what}: its name does not resolve (no network or DNS?); '
                                  'check the network connection') from None
            if attempt == retries: raise KaggleError(f'could not reach Kaggle to {what}: check the network connection') from None
        time.sleep(delay)
        delay *= 2


def _said(response):
    """What Kaggle's error response says, as ': its message' (or nothing)."""
    try: msg = response.json().get('message')
    except Exception: msg = None
    return f': {_first_line(msg)}' if msg else ''


def metric_text(name):
    """Kaggle's evaluation metric for the competition, as its API words it ('Categorization Accuracy'), or None when
    the API names none; a KaggleError when Kaggle cannot be asked."""
    a = api()
    res = call(f'look up the metric of {name}', a.competitions_list, search=name)
    for c in getattr(res, 'competitions', res) or []:   # 2.x: a response with .competitions; 1.6.x: a list
        ref = str(getattr(c, 'ref', '') or '')
        if name in (ref, ref.rstrip('/').rsplit('/', 1)[-1]):   # the slug, or the competition's URL (2.x)
            return getattr(c, 'evaluation_metric', None) or getattr(c, 'evaluationMetric', None) or None
    return None


def setup(name, path=None, workdir='.', metric=None, **overrides):
    """The competition's data, unpacked, described and recorded for `workdir`: attached (Kaggle notebook) or downloaded
    once. `metric` (a key of comp's metrics) overrides Kaggle's; `overrides` are layout fields for `describe`."""
    detect.check_settings(metric, overrides)
    found = kernel.attached(name, workdir) if kernel.in_kaggle_notebook() and not path else None
    if found:
        # The attached data is read-only: archives to unpack need a writable folder beside the notebook.
        dest = _linked(found, Path(workdir) / name) if pending(found) else found
    else:
        dest = Path(path) if path else Path(workdir) / name
        if dest.exists() and not dest.is_dir(): raise KaggleError(f'{dest} is a file: move it away, or pass --path')
        if not dest.exists() or not any(dest.iterdir()): _download(name, dest)
    unpack(dest)
    try: kaggle_metric = metric_text(name)
    except KaggleError: kaggle_metric = None   # Kaggle unreachable: describe infers the metric from the files
    comp = competition.describe(dest, name=name, metric=metric, kaggle_metric=kaggle_metric, **overrides)
    competition.record(comp, workdir)
    return comp


def _download(name, dest):
    """Kaggle's files for `name`, unzipped into `dest` (absent or empty), which appears only once they all are."""
    a = api()
    with atomic_dir(dest) as out:
        raw = Path(tempfile.mkdtemp(prefix='.download.', dir=out))
        call(f'download {name}', a.competition_download_files, name, path=raw, force=True, quiet=True)
        zips = list(raw.glob('*.zip'))
        if not zips: raise KaggleError(f'Kaggle sent no files for {name}')
        try:
            with zipfile.ZipFile(zips[0]) as z: z.extractall(out)
        except zipfile.BadZipFile as e:
            raise KaggleError(f'Kaggle\'s download of {name} arrived damaged ({_first_line(e)}): run the command again') from None
        shutil.rmtree(raw)


ARCHIVES = ('.zip', '.7z')
_MAC = '__MACOSX'   # macOS's resource forks, in zips made on a Mac: never data


def _names(archive):
    """The member names of a zip or 7z archive, with '/' separators."""
    if archive.suffix.lower() == '.7z':
        with _py7zr(archive).SevenZipFile(archive, 'r') as z: names = z.getnames()
    else:
        with zipfile.ZipFile(archive) as z: names = z.namelist()
    return [n.replace('\\', '/').lstrip('/') for n in names]


def _extract(archive, to):
    if archive.suffix.lower() == '.7z':
        with _py7zr(archive).SevenZipFile(archive, 'r') as z: z.extractall(path=to)
    else:
        with zipfile.ZipFile(archive) as z: z.extractall(to)


def _py7zr(archive):
    try: import py7zr
    except ImportError:   # a dependency of comp, but an install without it should still unpack zips
        raise DataError(f'{archive} is a 7z archive, and py7zr (which unpacks it) is not installed: '
                        'pip install py7zr, then run `comp setup` again') from None
    return py7zr


def _damaged():
    """What the archive libraries raise on a damaged, truncated, encrypted or unsupported archive."""
    import lzma
    import zlib
    errors = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError, RuntimeError)
    try: from py7zr import exceptions as x
    except ImportError: return errors
    return errors + (x.ArchiveError, x.PasswordRequired, x.AbsolutePathError)


def _target(archive, names):
    """(where `archive` unpacks to, the member that lands there or None): a single top folder (train.zip holding
    train/) or a single file named as the archive (labels.csv.zip holding labels.csv) lands at the top of the
    competition as it is; bare files go into a folder named after the archive (train.zip -> train/)."""
    names = [n for n in names if n and n.split('/')[0] != _MAC]
    tops = {n.split('/')[0] for n in names}
    if len(tops) == 1:
        (top,) = tops
        if any('/' in n.rstrip('/') or n.endswith('/') for n in names) or top == archive.stem:
            return archive.parent / top, top
    return archive.parent / archive.stem, None


def pending(folder):
    """The archives at the top of `folder` not unpacked yet, as (archive, target, top member) (see `_target`)."""
    folder, out = Path(folder), []
    for a in sorted(folder.iterdir()):
        if a.name.startswith('.') or a.suffix.lower() not in ARCHIVES or not a.is_file(): continue
        if (folder / a.stem).exists(): continue   # unpacked before: not even opened again
        try: target, top = _target(a, _names(a))
        except _damaged() as e: raise _damaged_error(a, e) from None
        if not target.exists(): out.append((a, target, top))
    return out


def _damaged_error(archive, e):
    return DataError(f'cannot unpack {archive}: it is damaged or unreadable ({type(e).__name__}: {_first_line(e)}); '
                     f'delete {archive.parent} and run `comp setup` again to download it anew')


def unpack(folder):
    """Unpack, once, every zip and 7z archive at the top of `folder` whose extracted folder is absent, each atomically
    (extracted in a hidden temporary folder, then renamed), leaving the archives in place; return the paths made."""
    made = []
    for archive, target, top in pending(folder):
        try:
            # The pid in the name lets a later atomic_dir sweep what a killed process left.
            with tempfile.TemporaryDirectory(prefix=f'.{target.name}.{os.getpid()}.', dir=target.parent) as raw:
                _extract(archive, raw)
                src = Path(raw) / top if top else Path(raw)
                if src.is_file():   # labels.csv.zip holding labels.csv
                    with atomic_path(target) as t: os.replace(src, t)
                else:
                    with atomic_dir(target) as out:
                        for c in list(src.iterdir()):
                            if c.name != _MAC: c.rename(out / c.name)
        except OSError as e:
            if not no_room(e): raise
            raise DiskError(f'no room on the disk to unpack {archive} into {target}: free some space and run '
                            '`comp setup` again') from None
        except _damaged() as e:
            raise _damaged_error(archive, e) from None
        made.append(target)
    return made


def _linked(found, dest):
    """A writable folder `dest` of links to the attached (read-only) competition `found`'s files, where its archives
    can be unpacked; made once."""
    if not dest.is_dir() or not any(dest.iterdir()):
        with atomic_dir(dest) as out:
            for p in sorted(found.iterdir()): (out / p.name).symlink_to(p.resolve())
    return dest


def submit(file, message, wait=300, poll=None, dry_run=False, workdir='.', echo=print, data=None):
    """Validate `file`, upload it, wait (up to `wait` seconds) for its score, and record it in its sidecar."""
    comp = competition.find(data, workdir=workdir, check_images=False)
    submission.validate(file, comp)
    if dry_run: return {'dry_run': True, 'valid': True}
    a = api()
    res = call(f'submit to {comp.name}', _submit_once, a, str(file), message, comp.name)
    rec = {'competition': comp.name, 'message': message, 'ref': res.ref,
           'submitted_at': time.strftime('%Y-%m-%d %H:%M:%S'), 'status': 'PENDING', 'public_score': None}
    _record(file, rec)
    _await(a, comp.name, rec, wait, poll, echo)
    _record(file, rec)
    return rec


def _await(a, name, rec, wait, poll, echo):
    """Wait up to `wait` seconds for Kaggle to score submission rec['ref'] of competition `name`; update `rec`."""
    poll = seconds_var('COMP_KAGGLE_POLL', 5) if poll is None else poll
    deadline = time.time() + wait
    while time.time() < deadline:
        sub = next((s for s in list_submissions(a, name) if str(s['ref']) == str(rec['ref'])), None)
        if sub and sub['status'] != 'PENDING':
            rec.update(status=sub['status'], public_score=sub['public_score'], error=sub.get('error') or None)
            break
        echo(f'waiting for Kaggle to score submission {rec["ref"]} ({int(deadline - time.time())}s left)')
        time.sleep(poll)
    return rec


def _submit_once(a, file, message, name):
    import requests
    res = a.competition_submit(file, message, name, quiet=True)
    if res.message == a.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE or not res.ref:
        # The upload did not complete, so nothing was submitted: a transient failure worth retrying.
        r = requests.Response()
        r.status_code = 503
        raise requests.HTTPError('upload failed', response=r)
    return res


def _record(file, rec): _record_sidecar(submission.sidecar_path(file), rec)


def _record_sidecar(path, rec):
    """Add or update Kaggle's record `rec` (by its ref) in the submission record at `path`."""
    side = read_json(path) if Path(path).exists() else {}
    side.setdefault('kaggle', [])
    side['kaggle'] = [k for k in side['kaggle'] if k.get('ref') != rec['ref']] + [dict(rec)]
    write_json(path, side)


def list_submissions(a, name):
    """This competition's submissions on Kaggle as plain dicts."""
    subs = call(f'list submissions of {name}', a.competition_submissions, name) or []
    return [{'ref': s.ref, 'file': s.file_name, 'date': str(s.date)[:19], 'message': s.description,
             'status': getattr(s.status, 'name', str(s.status)), 'public_score': s.public_score or None,
             'error': s.error_description} for s in subs if s is not None]


def submissions(workdir='.', data=None):
    """Kaggle's list of this competition's submissions, joined with local sidecars (which runs made each)."""
    comp = competition.find(data, workdir=workdir, check_images=False)
    local = {}
    for side in (Path(workdir) / submission.SUBMISSIONS_DIR).glob('*.json'):
        rec = read_json(side)
        for k in rec.get('kaggle', []): local[str(k['ref'])] = rec
    rows = list_submissions(api(), comp.name)
    for r in rows:
        rec = local.get(str(r['ref']), {})
        r['runs'] = ','.join(rec.get('runs', [])) or None
        r['local_file'] = rec.get('file')
    return rows


def submit_kernel(kernel_ref, message, version=None, wait=300, poll=None, workdir='.', echo=print, data=None):
    """Submit version `version` (default: the latest) of the notebook `kernel_ref` (USER/SLUG) to the workspace's code
    competition, wait for its score, and record it with the runs behind it (as `comp push-notebook` pushed them)."""
    comp = competition.find(data, workdir=workdir, check_images=False)
    if str(kernel_ref).count('/') != 1: raise CompError(f'--kernel {kernel_ref}: give the notebook as USER/SLUG')
    a = api()
    ref = kernel_ref if version is None else f'{kernel_ref}/{version}'
    what = f'version {version} of {kernel_ref}' if version is not None else f'the latest version of {kernel_ref}'
    st = call(f'check the notebook {ref}', a.kernels_status, ref)
    status = getattr(st.status, 'name', str(st.status))
    if status == 'ERROR':
        why = getattr(st, 'failure_message', None)
        raise KaggleError(f'{what} failed on Kaggle{f" ({why})" if why else ""}: fix it, push it again with '
                          '`comp push-notebook`, and submit the new version')
    if status != 'COMPLETE':
        raise KaggleError(f'{what} has not finished running on Kaggle ({status.lower()}): submit it once it is complete')
    res = call(f'submit the notebook {kernel_ref} to {comp.name}', a.competition_submit_code, SUBMISSION_FILE, message,
               comp.name, kernel_ref, version, quiet=True)
    versions = pushed('kernels').get(kernel_ref) or []
    push = next((v for v in reversed(versions) if version is None or v.get('version') == version), {})
    rec = {'competition': comp.name, 'message': message, 'ref': res.ref, 'kernel': kernel_ref,
           'version': version if version is not None else push.get('version'),
           'submitted_at': time.strftime('%Y-%m-%d %H:%M:%S'), 'status': 'PENDING', 'public_score': None}
    side = _kernel_sidecar(kernel_ref, rec['version'], push, workdir)
    _record_sidecar(side, rec)
    _await(a, comp.name, rec, wait, poll, echo)
    _record_sidecar(side, rec)
    return {**rec, 'runs': read_json(side).get('runs', [])}


SUBMISSION_FILE = 'submission.csv'   # what a code competition reads from a notebook's output


def _kernel_sidecar(kernel_ref, version, push, workdir):
    """The record a kernel submission goes in: the local submission the notebook repeats, when there is one; else a
    record of its own (submissions/SLUG-vN.json) naming the runs behind it, so `comp submissions` shows them."""
    folder = Path(workdir) / submission.SUBMISSIONS_DIR
    name = push.get('submission')
    if name and (folder / f'{name}.json').is_file(): return folder / f'{name}.json'
    side = folder / f'{kernel_ref.split("/")[1]}-v{version if version is not None else "latest"}.json'
    if not side.exists(): write_json(side, {'kernel': kernel_ref, 'version': version, 'runs': push.get('runs', [])})
    return side


# What was pushed from here (comp.push writes it; a kernel submission reads which runs its notebook was pushed with).
def _pushed_record(what='datasets'):
    return state_dir() / f'kaggle-{what}.json'


def pushed(what='datasets'):
    """What was pushed from here: datasets (slug -> manifest) or kernels (USER/SLUG -> versions)."""
    f = _pushed_record(what)
    return read_json(f) if f.exists() else {}


def remember(what, key, update):
    """Record in the `what` record (see `pushed`) that `key` is now update(what it was)."""
    f = _pushed_record(what)
    rec = pushed(what)
    rec[key] = update(rec.get(key))
    write_json(f, rec)
