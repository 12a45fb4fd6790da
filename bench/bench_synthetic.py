"""Synthetic restaurant generator: frames rendered and written per second at 320x240 (target >= 500, one core),
next to the cost of only encoding the same number of frames (the floor set by the MPEG-4 writer)."""
import os, tempfile, time
os.environ.setdefault('OMP_NUM_THREADS', '1')
import cv2
cv2.setNumThreads(1)
import numpy as np
from restaurant_actions.data.synthetic import SynthConfig, make_synthetic
from restaurant_actions.data.video import VideoWriter


def main(minutes=0.5):
    cfg = SynthConfig(minutes=minutes, fps=30, size=(320, 240), views=2)
    n = int(minutes * 60 * cfg.fps) * cfg.views
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter(); make_synthetic(d + '/ds', cfg, progress=False); t_gen = time.perf_counter() - t
        frame = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
        t = time.perf_counter()
        with VideoWriter(d + '/enc.mp4', 30, (320, 240)) as w:
            for _ in range(n): w.write(frame)
        t_enc = time.perf_counter() - t
    print(f'synthetic 320x240, {n} frames (both views): {n/t_gen:.0f} frames/s generated+written '
          f'(target >= 500); encoding alone {n/t_enc:.0f} frames/s; generator/encode-only time ratio {t_gen/t_enc:.2f}')


if __name__ == '__main__': main()
