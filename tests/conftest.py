import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault('MPLBACKEND', 'Agg')

# `make test` runs 2 pytest workers on 2 cores: one thread each (torch, OpenMP, OpenCV) instead of 2 × 2 fighting.
if os.environ.get('PYTEST_XDIST_WORKER'):
    for v in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'): os.environ.setdefault(v, '1')
    import torch, cv2
    torch.set_num_threads(1); cv2.setNumThreads(1)
