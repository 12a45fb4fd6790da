"""Data shared by the reliability tests (not a test module)."""
from restaurant_actions.data.splits import block_split
from restaurant_actions.data.synthetic import SynthConfig, make_synthetic
from restaurant_actions.data.video import FrameCache


def tiny_training_data(d):
    "An 18-s single-view synthetic video (6 classes) in folder `d`, its frame cache at 64x64, and its held-out split."
    ds = make_synthetic(d/'data', SynthConfig(minutes=0.3, fps=10, size=(160, 128), views=1, segment_minutes=0.3, seed=1,
                                              classes=6, lookalikes=0), progress=False)
    cache = FrameCache(d/'cache'); cache.build(ds, size=(64, 64), progress=False)
    return ds, cache, block_split(ds, test_fraction=0.2, block=40, seed=0)
