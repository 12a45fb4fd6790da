"""Data and comparisons shared by the reliability tests (not a test module)."""
import torch

from restaurant_actions.data.splits import block_split
from restaurant_actions.data.synthetic import SynthConfig, make_synthetic
from restaurant_actions.data.video import FrameCache


def tiny_training_data(d):
    "An 18-s single-view synthetic video (6 classes) in folder `d`, its frame cache at 64x64, and its held-out split."
    ds = make_synthetic(d/'data', SynthConfig(minutes=0.3, fps=10, size=(160, 128), views=1, segment_minutes=0.3, seed=1,
                                              classes=6, lookalikes=0), progress=False)
    cache = FrameCache(d/'cache'); cache.build(ds, size=(64, 64), progress=False)
    return ds, cache, block_split(ds, test_fraction=0.2, block=40, seed=0)


def tensors_differ(a, b, where='') -> list:
    "Paths where two checkpoint-like structures differ, tensors compared bit for bit (NaN equals NaN)."
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b) else [where]
    if isinstance(a, dict):
        if not isinstance(b, dict) or set(a) != set(b): return [where]
        return [d for k in a for d in tensors_differ(a[k], b[k], f'{where}.{k}')]
    if isinstance(a, (list, tuple)):
        if not isinstance(b, (list, tuple)) or len(a) != len(b): return [where]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in tensors_differ(x, y, f'{where}[{i}]')]
    return [] if a == b or (a != a and b != b) else [where]
