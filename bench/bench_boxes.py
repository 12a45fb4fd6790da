"""Pairwise IoU: restaurant_actions.boxes.box_iou (torchvision, vectorised) vs the straightforward Python double loop
that evaluators of the field use, measured alternately in one run; prints the speed-up ratio."""
import time
import numpy as np
from restaurant_actions.boxes import box_iou


def loop_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(a):
        for j, q in enumerate(b):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]) + 1); ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]) + 1)
            inter = iw * ih
            out[i, j] = inter / ((p[2] - p[0] + 1) * (p[3] - p[1] + 1) + (q[2] - q[0] + 1) * (q[3] - q[1] + 1) - inter)
    return out


def boxes(rng, n):
    xy = rng.uniform(0, 300, (n, 2)); return np.concatenate([xy, xy + rng.uniform(5, 60, (n, 2))], 1)


def main(n=300, m=300, reps=5):
    rng = np.random.default_rng(0)
    a, b = boxes(rng, n), boxes(rng, m)
    assert np.allclose(box_iou(a, b, pixel_inclusive=True), loop_iou(a, b))
    t_ours, t_loop = [], []
    for _ in range(reps):     # alternate, so machine noise hits both sides alike
        t = time.perf_counter(); box_iou(a, b, pixel_inclusive=True); t_ours.append(time.perf_counter() - t)
        t = time.perf_counter(); loop_iou(a, b); t_loop.append(time.perf_counter() - t)
    o, l = np.median(t_ours), np.median(t_loop)
    print(f'box_iou {n}x{m}: ours {o*1e3:.2f} ms, python loop {l*1e3:.1f} ms, speed-up {l/o:.0f}x')


if __name__ == '__main__': main()
