"""The model zoo: one recipe per architecture, as data, and everything comp asks timm about an architecture
(names and tags, fixed input size, normalization, hub repo, finding weights), and packing hub weight files with a
manifest for a notebook without network. Any timm model name works too."""
import difflib
import functools
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import CompError, ConfigError
from .files import write_json

RESIZE_METHODS = ('squish', 'crop', 'pad')


@dataclass(frozen=True)
class Recipe:
    """How to train one architecture: timm name with tag, sizes, batch, schedule. Sizes are (height, width)."""
    name: str
    arch: str                      # timm name with its pretrained tag
    size: tuple = (224, 224)       # batch (augmented) size
    resize: tuple = ('squish', (480, 480))   # item resize: method, (height, width)
    bs: int = 32
    accum: int = 1
    lr: float = 0.01
    epochs: int = 12
    schedule: str = 'fine_tune'
    pretrained: bool = True

    def row(self):
        """The recipe as a flat dict for tables."""
        d = asdict(self)
        d['size'] = 'x'.join(map(str, self.size))
        d['resize'] = f'{self.resize[0]} ' + 'x'.join(map(str, self.resize[1]))
        d['bs'] = f'{self.bs}x{self.accum}'
        del d['accum']
        return d


# The reference recipe (Jeremy Howard's "Road to the Top" notebooks on Paddy Doctor, parts 1-3) sets these defaults.
FULL = (640, 480)
RECIPES = {r.name: r for r in [
    Recipe('resnet26d', 'resnet26d.bt_in1k', (128, 128), ('squish', (480, 480)), 64, 1, 0.01, 3),
    Recipe('convnext_small', 'convnext_small.fb_in22k', (256, 192), ('pad', (480, 360)), 32, 1, 0.01, 12),
    Recipe('convnext_base', 'convnext_base.fb_in22k', (256, 192), ('pad', (480, 360)), 16, 2, 0.01, 12),
    Recipe('convnext_large', 'convnext_large.fb_in22k', (320, 224), ('crop', FULL), 16, 2, 0.01, 12),
    Recipe('vit_small', 'vit_small_patch16_224.augreg_in21k_ft_in1k', (224, 224), ('squish', (480, 480)), 32, 1, 0.01, 12),
    Recipe('vit_base', 'vit_base_patch16_224.augreg2_in21k_ft_in1k', (224, 224), ('squish', (480, 480)), 32, 1, 0.01, 12),
    Recipe('vit_large', 'vit_large_patch16_224.augreg_in21k_ft_in1k', (224, 224), ('squish', (480, 480)), 16, 2, 0.01, 12),
    Recipe('swin_base', 'swin_base_patch4_window7_224.ms_in22k', (224, 224), ('crop', FULL), 32, 1, 0.01, 12),
    Recipe('swin_large', 'swin_large_patch4_window7_224.ms_in22k', (224, 224), ('crop', FULL), 16, 2, 0.01, 12),
    Recipe('swinv2_base', 'swinv2_base_window12_192.ms_in22k', (192, 192), ('squish', (480, 480)), 32, 1, 0.01, 12),
    Recipe('swinv2_large', 'swinv2_large_window12_192.ms_in22k', (192, 192), ('squish', (480, 480)), 16, 2, 0.01, 12),
    # The higher resolutions top solutions used (Cassava: "the bigger the image size, the better"): fine-tuned at 384.
    # bs x accum keeps an effective 32 in 16 GB by estimate (activations grow ~3x from 224); not yet measured on a GPU.
    Recipe('convnext_small_384', 'convnext_small.fb_in22k_ft_in1k_384', (384, 384), ('squish', (512, 512)), 16, 2, 0.01, 12),
    Recipe('vit_base_384', 'vit_base_patch16_384.augreg_in21k_ft_in1k', (384, 384), ('squish', (512, 512)), 8, 4, 0.01, 12),
    Recipe('swin_base_384', 'swin_base_patch4_window12_384.ms_in22k', (384, 384), ('crop', FULL), 8, 4, 0.01, 12),
    # Trained from scratch: the demo (no weights can be downloaded here) and the tests' tiny models.
    Recipe('demo', 'resnet10t.c3_in1k', (64, 64), ('squish', (96, 96)), 16, 1, 0.01, 15, 'one_cycle', False),
    Recipe('test_convnext', 'test_convnext.r160_in1k', (64, 64), ('squish', (96, 96)), 16, 1, 0.01, 2, 'one_cycle', False),
    Recipe('test_vit', 'test_vit.r160_in1k', (160, 160), ('squish', (160, 160)), 16, 1, 0.01, 2, 'one_cycle', False),
]}


def timm_names():
    """Every model name timm knows, with and without pretrained tags."""
    import timm
    return set(timm.list_models()) | set(timm.list_pretrained())


def _did_you_mean(name, names):
    close = difflib.get_close_matches(name, [n for n in names if n != name], n=3, cutoff=0.6)
    return f'did you mean {" or ".join(close)}? ' if close else ''


def recipe(name):
    """The recipe for a short name, or a default one built around any timm model name (with a valid tag)."""
    if name in RECIPES: return RECIPES[name]
    import timm
    model, _, tag = name.partition('.')
    if model in set(timm.list_models()):
        if tag and name not in set(timm.list_pretrained(f'{model}.*')):
            tags = timm.list_pretrained(f'{model}.*')
            raise ConfigError(f'{model} has no pretrained tag {tag!r}: {_did_you_mean(name, tags)}'
                              f'its tags are {", ".join(t.partition(".")[2] for t in tags) or "none"}')
        return Recipe(name, name, size=fixed_input_size(name) or (224, 224))
    raise ConfigError(f'unknown arch {name!r}: {_did_you_mean(name, list(RECIPES) + sorted(timm_names()))}'
                      'run `comp zoo` for the recipes; any timm model name works too')


def pretrained_cfg(arch):
    """timm's pretrained config for `arch` (its default tag when it has none), or None; no download."""
    import timm
    try: return timm.get_pretrained_cfg(arch)
    except RuntimeError: return None


def fixed_input_size(arch):
    """(height, width) for models that only take one input size (ViT, Swin), else None."""
    cfg = pretrained_cfg(arch)
    return tuple(cfg.input_size[1:]) if cfg is not None and cfg.fixed_input_size else None


def check_input_size(arch, size):
    """That timm can build `arch` (a model built for one input size) at `size` (height, width) and run an image of
    that size through it, else a one-line ConfigError with the nearest multiple of 32 that works.

    Swin pads its windows and takes any size; window-partition models such as MaxViT and CoAtNet need sizes their
    total stride times their window divides, which only a forward pass tells. Built on PyTorch's meta device: no
    memory, no weights, no arithmetic, so it is instant even for a large model."""
    def works(hw):
        import torch
        import timm
        try:
            with torch.device('meta'):
                timm.create_model(arch, pretrained=False, num_classes=0, img_size=tuple(hw))(torch.zeros(1, 3, *hw))
            return None
        except (AssertionError, RuntimeError, ValueError, ZeroDivisionError, TypeError, NotImplementedError) as e:
            return str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
    why = works(size)
    if why is None or works(fixed_input_size(arch)) is not None: return   # fine, or a model the meta device cannot run
    near = [max(32, 32 * round(s / 32)) for s in size]
    hint = f'use a multiple of 32 such as --size {"x".join(map(str, near))}' if works(near) is None else \
        f'use its own size, --size {"x".join(map(str, fixed_input_size(arch)))}'
    raise ConfigError(f'--size {"x".join(map(str, size))}: {arch} cannot be built for that size (timm: {why}); {hint}')


@functools.lru_cache(maxsize=None)
def features_nhwc(arch):
    """Whether timm's `arch` gives its unpooled features as (batch, height, width, channels), as Swin does.

    fastai's head pools a timm model's `forward_features` as (batch, channels, height, width), which for such a model
    pools the wrong axes (and fails on the head's first batch norm); built on the meta device, so it costs no memory."""
    import torch
    import timm
    try:
        with torch.device('meta'): m = timm.create_model(arch, pretrained=False, num_classes=0)
    except Exception:   # noqa: BLE001 - a model the meta device cannot build: fastai's own handling, as before
        return False
    return getattr(m, 'output_fmt', None) == 'NHWC'


def has_weights(arch):
    """Whether timm knows where to get pretrained weights for `arch` (some models exist only untrained)."""
    cfg = pretrained_cfg(arch)
    return cfg is not None and bool(cfg.hf_hub_id or cfg.url or cfg.file)


def normalization(arch):
    """The mean and std that `arch`'s pretrained weights expect, from timm's config."""
    cfg = pretrained_cfg(arch)
    if cfg is None: return None
    return {'mean': [float(v) for v in cfg.mean], 'std': [float(v) for v in cfg.std]}


def hub_repo(arch):
    """The Hugging Face hub repo of `arch`'s pretrained weights, or None when timm gets them elsewhere."""
    cfg = pretrained_cfg(arch)
    return cfg.hf_hub_id if cfg is not None else None


NO_WEIGHTS = 'pass --weights FILE (or a folder of cached Hugging Face hub files), or --no-pretrained'
WEIGHT_FILES = ('model.safetensors', 'pytorch_model.bin')
WEIGHTS_MANIFEST = 'comp-weights.json'   # in a packed weights folder: which timm models it holds, and their hub repos


def hub_cached(arch, cache_dir=None):
    """The cached hub file holding `arch`'s weights (in `cache_dir`, else the default hub cache), or None."""
    from huggingface_hub import try_to_load_from_cache
    repo = hub_repo(arch)
    if not repo: return None
    for f in WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, f, cache_dir=cache_dir)
        if isinstance(hit, str): return Path(hit)
    return None


def hub_offline():
    """Whether HF_HUB_OFFLINE is set, in any spelling of true the hub accepts."""
    return os.environ.get('HF_HUB_OFFLINE', '').strip().upper() in ('1', 'ON', 'YES', 'TRUE')


def hub_host():
    """(host, port) of the Hugging Face hub downloads come from: HF_ENDPOINT's, as the hub client reads it."""
    from urllib.parse import urlsplit
    url = urlsplit(os.environ.get('HF_ENDPOINT') or 'https://huggingface.co')
    try: port = url.port
    except ValueError: port = None
    return url.hostname or 'huggingface.co', port or (80 if url.scheme == 'http' else 443)


def hub_reachable():
    """Whether a connection to the hub opens (in 5 s): the hub client would otherwise retry for half a minute."""
    import socket
    try: socket.create_connection(hub_host(), timeout=5).close()
    except OSError: return False
    return True


def check_hub(arch):
    """Fail at once, not after minutes of retries, when the weights are neither cached nor downloadable."""
    if not hub_repo(arch) or hub_cached(arch): return  # weights from a URL or elsewhere: let timm try
    if hub_offline():
        raise ConfigError(f'pretrained weights for {arch} are not in the Hugging Face cache and HF_HUB_OFFLINE is set: {NO_WEIGHTS}')
    if not hub_reachable():
        raise ConfigError(f'no network to download pretrained weights for {arch}: {NO_WEIGHTS}')


def weights_file(arch, weights):
    """The weights file for `arch` from --weights: a file, or a folder of cached Hugging Face hub files.

    A hub-cache folder (as attached to a Kaggle notebook with internet off) is searched for timm's repo of
    `arch`; a plain folder for `<arch>/model.safetensors` or a single weights file."""
    w = Path(weights).expanduser()
    if w.is_file(): return w
    if not w.is_dir(): raise ConfigError(f'--weights {weights}: no such file or folder')
    for root in (w, w / 'hub'):
        hit = hub_cached(arch, cache_dir=root)
        if hit: return hit
    for d in (w / arch, w / arch.split('.')[0], w):
        found = [d / f for f in WEIGHT_FILES if (d / f).is_file()]
        if found: return found[0]
    raise ConfigError(f'--weights {weights}: no weights for {arch} in it (expected a Hugging Face hub cache '
                      f'with {hub_repo(arch) or arch}, or {arch}/model.safetensors)')


def hub_sources(archs):
    """[(timm name, hub repo, cached weights file or None)] for pretrained weights of `archs` (recipes or timm names),
    all checked before any is downloaded: one that timm has no hub weights for, or one not cached while the hub cannot
    be reached, is a CompError at once (not after each download's retries)."""
    out = []
    for arch in archs:
        name = recipe(arch).arch
        repo = hub_repo(name)
        if not repo: raise CompError(f'{arch}: timm has no Hugging Face hub weights for {name} to push')
        out.append((name, repo, hub_cached(name)))
    missing = [(name, repo) for name, repo, hit in out if hit is None]
    if missing and (hub_offline() or not hub_reachable()):
        why = 'HF_HUB_OFFLINE is set' if hub_offline() else f'no network to reach {hub_host()[0]}'
        names, repos = ', '.join(n for n, _ in missing), ', '.join(r for _, r in missing)
        raise CompError(f'pretrained weights for {names} are not in the Hugging Face cache and cannot be downloaded '
                        f'({why}): run with network once, or point HF_HUB_CACHE at a cache holding {repos}')
    return out


def _download(name, repo):
    from huggingface_hub import hf_hub_download
    try: return Path(hf_hub_download(repo, WEIGHT_FILES[0]))
    except Exception as e:
        raise CompError(f'pretrained weights for {name} are not in the Hugging Face cache and could not be downloaded '
                        f'({type(e).__name__}): run with network once, or point HF_HUB_CACHE at a cache holding {repo}') from None


def pack_weights(sources, out):
    """Copy the hub-cache files of `sources` (hub_sources: downloading those not cached) into `out` in the hub's own
    layout, with a manifest, so `--weights out` (weights_file) finds them with no network."""
    out = Path(out)
    manifest = {'archs': {}}
    for name, repo, f in sources:
        f = f or _download(name, repo)
        rev = f.parent.name                      # hub files live in snapshots/<revision>/
        folder = out / f'models--{repo.replace("/", "--")}'
        (folder / 'snapshots' / rev).mkdir(parents=True, exist_ok=True)
        (folder / 'refs').mkdir(exist_ok=True)
        (folder / 'refs' / 'main').write_text(rev)
        shutil.copyfile(f, folder / 'snapshots' / rev / f.name)   # the blob itself, not the cache's symlink
        manifest['archs'][name] = repo
    write_json(out / WEIGHTS_MANIFEST, manifest)
    return manifest
