"""End-to-end training throughput on a GPU: convnext_small at 224 with mixed precision, three ways.

1. upper bound: the same learner fed synthetic tensors already on the GPU;
2. comp: comp.data.dataloaders (decode-once cache, pinned memory, a resized copy);
3. plain fastai: ImageDataLoaders.from_folder with Resize(480, squish) as the reference did.
Needs CUDA; on a CPU-only machine it records that it was skipped.
Usage: python bench/train_bench.py [--scale full] [--steps 60]"""
import os
import tempfile

from common import Timer, parser, record, sample


def throughput(learn, dl, steps):
    import torch
    learn.model.cuda().train()
    opt = torch.optim.AdamW(learn.model.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    it, k, warm = iter(dl), 0, 5
    for i in range(steps + warm):
        if i == warm:
            torch.cuda.synchronize()
            t = Timer().__enter__()
            k = 0
        try: xb, yb = next(it)
        except StopIteration:
            it = iter(dl)
            xb, yb = next(it)
        with torch.autocast('cuda', dtype=dtype):
            loss = torch.nn.functional.cross_entropy(learn.model(xb), yb)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        k += len(xb)
    torch.cuda.synchronize()
    t.__exit__()
    return round(k / t.s, 1)


def main():
    ap = parser(__doc__)
    ap.add_argument('--steps', type=int, default=60)
    ap.add_argument('--bs', type=int, default=64)
    a = ap.parse_args()
    import torch
    if not torch.cuda.is_available():
        record('train_gpu', [{'run': 'skipped', 'reason': 'no CUDA GPU on this machine'}])
        return
    from fastai.vision.all import ImageDataLoaders, Resize, aug_transforms, vision_learner
    from comp import competition, data, resize
    src = sample(a.scale)
    comp = competition.load(src)
    arch, workers = 'convnext_small', os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        root = resize.resize(comp, 320, workdir=tmp)[0]
        dls = data.dataloaders(comp, data.valid_ids(comp, tmp), (224, 224), ('squish', (240, 240)), bs=a.bs,
                               workers=workers, root=root, device='cuda')
        learn = vision_learner(dls, arch, pretrained=False)
        class Synthetic:
            def __iter__(self):
                x = torch.randn(a.bs, 3, 224, 224, device='cuda')
                y = torch.randint(0, 10, (a.bs,), device='cuda')
                while True: yield x, y
        bound = throughput(learn, Synthetic(), a.steps)
        ours = throughput(learn, dls.train, a.steps)
        ref = ImageDataLoaders.from_folder(src, train='train_images', valid_pct=0.2, seed=42, bs=a.bs, num_workers=workers,
                                           item_tfms=Resize(480, method='squish'),
                                           batch_tfms=aug_transforms(size=224, min_scale=0.75), device='cuda')
        plain = throughput(learn, ref.train, a.steps)
    rows = [{'input': 'synthetic tensors on GPU (upper bound)', 'img_s': bound, 'of_bound': 1.0},
            {'input': 'comp data path', 'img_s': ours, 'of_bound': round(ours / bound, 3)},
            {'input': 'plain fastai (squish 480)', 'img_s': plain, 'of_bound': round(plain / bound, 3)}]
    record('train_gpu', rows, {'scale': a.scale, 'arch': arch, 'bs': a.bs, 'steps': a.steps})


if __name__ == '__main__':
    main()
