"""The GPU's own ceiling for convnext_small training: a plain PyTorch loop (no fastai, no data loading) on one
random batch already on the GPU, bf16 autocast, AdamW. 5 warm-up steps, then 20 timed.
Usage: python bench/gpu_check.py   (what the session of 2026-11-22 ran on the lent H100, as bench/tmp/gpucheck.py)"""
import time

import torch
import timm

m = timm.create_model('convnext_small').cuda()
opt = torch.optim.AdamW(m.parameters())
x = torch.randn(64, 3, 224, 224, device='cuda'); y = torch.randint(0, 10, (64,), device='cuda')
for i in range(25):
    if i == 5: torch.cuda.synchronize(); t = time.perf_counter()
    with torch.autocast('cuda', dtype=torch.bfloat16): loss = torch.nn.functional.cross_entropy(m(x), y)
    opt.zero_grad(); loss.backward(); opt.step()
    if i == 0: torch.cuda.synchronize(); print('first step done', flush=True)
torch.cuda.synchronize(); print('raw torch bf16 img/s', 20 * 64 / (time.perf_counter() - t), 'cudnn.benchmark', torch.backends.cudnn.benchmark, flush=True)
