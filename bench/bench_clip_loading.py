"""Clip loading: augmented float clips [3,16,224,224] per second.

ours     ClipDataset on the decode-once frame cache: one memory-mapped gather, one grid_sample for the jitter-crop
         and flip of all 16 frames, one 3x3 colour matrix for the colour jitter.
YOWO way 16 JPEG files per clip opened with PIL, cropped, resized, flipped and HSV-jittered frame by frame
         (PIL's HSV conversion and point operations), ToTensor per frame and concatenation along time — the
         pipeline of the YOWO code, re-implemented here from its description.
Both sides draw one set of augmentation parameters per clip and produce the same tensor type and shape; runs
alternate in one process so machine noise hits both alike; one thread each (as in a DataLoader worker).
Target: ours >= 20x.
"""
import os, tempfile, time
import cv2
import numpy as np
import torch
from PIL import Image
from torchvision.transforms.functional import to_tensor

from restaurant_actions.data.datasets import ClipAugment, ClipDataset, clip_indices
from restaurant_actions.data.synthetic import SynthConfig, make_synthetic
from restaurant_actions.data.video import FrameCache, frame_files

T, SIZE = 16, (224, 224)


def yowo_style_clip(files, key, rng, jitter=0.2, hue=0.1, sat=1.5, exp=1.5):
    imgs = [Image.open(files[i]).convert('RGB') for i in clip_indices(key, T, 1, len(files))]
    W, H = imgs[0].size
    dw, dh = int(W * jitter), int(H * jitter)
    left, right, top, bot = (int(rng.integers(-d, d + 1)) for d in (dw, dw, dh, dh))
    flip = rng.random() < 0.5
    rand_scale = lambda s: float(rng.uniform(1, s) if rng.random() < 0.5 else 1 / rng.uniform(1, s))
    dhue, dsat, dexp = float(rng.uniform(-hue, hue)), rand_scale(sat), rand_scale(exp)
    out = []
    for img in imgs:
        im = img.crop((left, top, W - right, H - bot)).resize(SIZE)
        if flip: im = im.transpose(Image.FLIP_LEFT_RIGHT)
        h, s, v = im.convert('HSV').split()
        s = s.point(lambda x: min(255, int(x * dsat))); v = v.point(lambda x: min(255, int(x * dexp)))
        h = h.point(lambda x: int(x + dhue * 255) % 256)
        out.append(Image.merge('HSV', (h, s, v)).convert('RGB'))
    return torch.cat([to_tensor(im).unsqueeze(1) for im in out], 1)


def main(n=40, reps=3):
    cv2.setNumThreads(1); torch.set_num_threads(1)   # one core per loader, as in DataLoader workers
    with tempfile.TemporaryDirectory() as d:
        cfg = SynthConfig(minutes=0.5, fps=15, size=(320, 240), views=1, video_format='jpg')
        ds = make_synthetic(f'{d}/ds', cfg, progress=False)
        cache = FrameCache(f'{d}/cache'); cache.build(ds, size=SIZE, progress=False)
        ours = ClipDataset(ds, cache, None, 'train', T=T, augment=ClipAugment())
        v = ds.videos[0]; files = frame_files(ds.video_path(v))
        keys = np.random.default_rng(0).integers(0, v.num_frames, n)
        idx = [int(np.flatnonzero((ours.keys[:, 0] == 0) & (ours.keys[:, 1] == k))[0]) for k in keys]
        a, b = ours[idx[0]]['clip'], yowo_style_clip(files, int(keys[0]), np.random.default_rng(0))
        assert a.shape == b.shape == (3, T, SIZE[1], SIZE[0]) and a.dtype == b.dtype == torch.float32
        t_ours, t_yowo = [], []
        for r in range(reps):
            ours.set_epoch(r)
            t = time.perf_counter()
            for i in idx: ours[i]['clip']
            t_ours.append(time.perf_counter() - t)
            rng = np.random.default_rng(r)
            t = time.perf_counter()
            for k in keys: yowo_style_clip(files, int(k), rng)
            t_yowo.append(time.perf_counter() - t)
        o, y = n / np.median(t_ours), n / np.median(t_yowo)
        print(f'clip loading [3,{T},{SIZE[1]},{SIZE[0]}] augmented, {torch.get_num_threads()} threads: '
              f'ours {o:.0f} clips/s, YOWO way (PIL + ToTensor + cat) {y:.1f} clips/s, speed-up {o / y:.0f}x (target >= 20x)')


if __name__ == '__main__': main()
