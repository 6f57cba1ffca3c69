"""The model zoo: one recipe per architecture, as data. Any timm model name works too."""
import difflib
from dataclasses import asdict, dataclass

from .errors import ConfigError

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


# The reference recipe ("Road to the Top", ../shared/PADDY.md) sets these defaults: parts 1-3.
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
    # Trained from scratch: the demo (no weights can be downloaded here) and the tests' tiny models.
    Recipe('demo', 'resnet10t.c3_in1k', (64, 64), ('squish', (96, 96)), 16, 1, 0.01, 15, 'one_cycle', False),
    Recipe('test_convnext', 'test_convnext.r160_in1k', (64, 64), ('squish', (96, 96)), 16, 1, 0.01, 2, 'one_cycle', False),
    Recipe('test_vit', 'test_vit.r160_in1k', (160, 160), ('squish', (160, 160)), 16, 1, 0.01, 2, 'one_cycle', False),
]}


def timm_names():
    """Every model name timm knows, with and without pretrained tags."""
    import timm
    return set(timm.list_models()) | set(timm.list_pretrained())


def recipe(name):
    """The recipe for a short name, or a default one built around any timm model name."""
    if name in RECIPES: return RECIPES[name]
    names = timm_names()
    if name in names or name.split('.')[0] in names:
        fixed = fixed_input_size(name)
        return Recipe(name, name, size=fixed or (224, 224))
    close = difflib.get_close_matches(name, list(RECIPES) + sorted(names), n=3, cutoff=0.6)
    hint = f'did you mean {" or ".join(close)}? ' if close else ''
    raise ConfigError(f'unknown arch {name!r}: {hint}run `comp zoo` for the recipes; any timm model name works too')


def fixed_input_size(arch):
    """(height, width) for models that only take one input size (ViT, Swin), else None."""
    import timm
    cfg = timm.get_pretrained_cfg(arch) if '.' in arch or timm.is_model_pretrained(arch) else None
    if cfg is None:
        try: cfg = timm.get_pretrained_cfg(timm.list_pretrained(arch + '.*')[0])
        except IndexError: return None
    return tuple(cfg.input_size[1:]) if cfg.fixed_input_size else None
