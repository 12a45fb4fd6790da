"""16-frame training clips: FrameCache.clip (decode once, memory-mapped gather) vs decoding the same 16 frames
from the video file each time (seek + read), measured alternately in one run; prints clips/s and the ratio."""
import tempfile, time
from pathlib import Path

import cv2
import numpy as np
from restaurant_actions.data.synthetic import make_synthetic, SynthConfig
from restaurant_actions.data.video import FrameCache, VideoDecoder


def decode_clip(path, idx, size):
    "The frames `idx` (consecutive) of a video file: seek to the first, read the rest, resize like the cache."
    dec = VideoDecoder(path, size=size, start=int(idx[0]), stop=int(idx[-1]) + 1)
    return np.stack([f for _, f in dec])


def main(clips=40, reps=5, T=16, size=(224, 224)):
    with tempfile.TemporaryDirectory() as d:
        ds = make_synthetic(Path(d)/'ds', SynthConfig(minutes=1.0, fps=15, size=(320, 240), segment_minutes=1.0), progress=False)
        cache = FrameCache(Path(d)/'cache')
        t = time.perf_counter(); cache.build(ds, size=size, progress=False); t_build = time.perf_counter() - t
        rng = np.random.default_rng(0)
        jobs = [(v, int(s)) for v in ds.videos for s in rng.integers(0, v.num_frames - T, clips // len(ds.videos))]
        v, s = jobs[0]
        assert np.array_equal(cache.clip(v.id, range(s, s + T)), decode_clip(ds.video_path(v), range(s, s + T), size))
        t_cache, t_dec = [], []
        for _ in range(reps):      # alternate, so machine noise hits both sides alike
            t = time.perf_counter()
            for v, s in jobs: cache.clip(v.id, np.arange(s, s + T))
            t_cache.append((time.perf_counter() - t) / len(jobs))
            t = time.perf_counter()
            for v, s in jobs: decode_clip(ds.video_path(v), np.arange(s, s + T), size)
            t_dec.append((time.perf_counter() - t) / len(jobs))
        c, dd = np.median(t_cache), np.median(t_dec)
        n = sum(v.num_frames for v in ds.videos)
        print(f'frame cache build: {len(ds.videos)} videos, {n} frames 320x240 -> {size[0]}x{size[1]} in {t_build:.2f} s ({n / t_build:.0f} frames/s)')
        print(f'{T}-frame clips at {size[0]}x{size[1]}: cache.clip {1 / c:.0f} clips/s, decode from file (seek+read) '
              f'{1 / dd:.1f} clips/s, speed-up {dd / c:.0f}x')


if __name__ == '__main__': main()
