"""The GPU's own ceiling for convnext_small training: a plain PyTorch loop (no fastai, no data loading) on one
random batch already on the GPU, mixed precision, AdamW; 5 warm-up steps, then `--steps` timed.
Usage: python bench/gpu_check.py [--precision bf16] [--channels-last]"""
import time

from common import parser, record


def main():
    ap = parser(__doc__)
    ap.add_argument('--arch', default='convnext_small')
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--size', type=int, default=224)
    ap.add_argument('--steps', type=int, default=20)
    ap.add_argument('--precision', default='bf16', choices=['bf16', 'fp16'])
    ap.add_argument('--channels-last', action='store_true')
    a = ap.parse_args()
    import timm
    import torch
    if not torch.cuda.is_available(): raise SystemExit('gpu_check needs a CUDA GPU')
    dtype = torch.bfloat16 if a.precision == 'bf16' else torch.float16
    m = timm.create_model(a.arch).cuda()
    if a.channels_last: m = m.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(m.parameters())
    scaler = torch.amp.GradScaler(enabled=dtype == torch.float16)
    x = torch.randn(a.bs, 3, a.size, a.size, device='cuda')
    y = torch.randint(0, 10, (a.bs,), device='cuda')
    for i in range(a.steps + 5):
        if i == 5:
            torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast('cuda', dtype=dtype):
            loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    torch.cuda.synchronize()
    rate = a.steps * a.bs / (time.perf_counter() - t)
    record(f'gpu_check-{a.precision}{"-channels_last" if a.channels_last else ""}',
           [{'arch': a.arch, 'precision': a.precision, 'channels_last': a.channels_last, 'bs': a.bs,
             'size': a.size, 'img_s': round(rate, 1), 'gpu_mem_gib': round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)}])


if __name__ == '__main__':
    main()
