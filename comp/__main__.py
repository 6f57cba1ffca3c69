"""`python -m comp`, which launchers run: `torchrun --nproc_per_node 2 -m comp train ...`, `accelerate launch -m comp train ...`."""
from .cli import main

if __name__ == '__main__': main()
