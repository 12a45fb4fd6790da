"""Training cost of the Recurrent YOLO against the frame YOLO it is ported from, on the same frames.

Issue targets: (time per frame, recurrent / frame) ÷ (FLOPs per frame, recurrent / frame) <= 1.15 — the LSTMs cost
no more than their arithmetic — and, with sparse frames (one in 4), a recurrent epoch no slower than a frame epoch.

Both models train on 128x128 frames, 24 classes, AdamW, one optimizer step each: the frame model on a batch of
B·T frames, the recurrent one on B sub-sequences of T frames (state carried, truncated back-propagation) — the same
frames per step. Steps alternate in one process (noise hits both alike); medians. FLOPs are forward FLOPs of
conv/matmul (torch's FlopCounterMode). An epoch = every training frame once (frame model) or one in `every`
(recurrent model with sparse frames), at the measured per-frame costs.
The study saw its LSTMs double the epoch time (and lost multi-GPU: 8x).
"""
import argparse, time
import numpy as np
import torch
from restaurant_actions.models.registry import build_model, count_flops

ap = argparse.ArgumentParser()
ap.add_argument('--width', type=float, default=0.5)
ap.add_argument('--size', type=int, default=128)
ap.add_argument('--B', type=int, default=4)
ap.add_argument('--T', type=int, default=4)
ap.add_argument('--every', type=int, default=4)
ap.add_argument('--steps', type=int, default=12)
ap.add_argument('--threads', type=int, default=2)
a = ap.parse_args()
torch.manual_seed(0); torch.set_num_threads(a.threads)
S, B, T = a.size, a.B, a.T
frame = build_model('yolov3_tiny', num_classes=24, width=a.width, loss='modern')
rec = build_model('recurrent_yolov3_tiny', num_classes=24, width=a.width, loss='modern')
x = torch.rand(B, T, 3, S, S)
tg = torch.tensor([[i, i % 24, 20., 20., 44., 60.] for i in range(B * T)])
f_fl = count_flops(frame.eval(), x[0, :1]) ; r_fl = count_flops(rec.eval(), x[:1]) / T
frame.train(); rec.train()
opt_f, opt_r = torch.optim.AdamW(frame.parameters(), 1e-4), torch.optim.AdamW(rec.parameters(), 1e-4)
state = None
def step_frame():
    loss = frame.loss(frame(x.flatten(0, 1)), tg)[0]; loss.backward(); opt_f.step(); opt_f.zero_grad()
def step_rec():
    global state
    out, state = rec(x, state); state = rec.detach_state(state)
    loss = rec.loss(out, tg)[0]; loss.backward(); opt_r.step(); opt_r.zero_grad()
for f in (step_frame, step_rec): f(); f()          # warm-up
tf, tr = [], []
for _ in range(a.steps):
    t = time.perf_counter(); step_frame(); tf.append(time.perf_counter() - t)
    t = time.perf_counter(); step_rec(); tr.append(time.perf_counter() - t)
pf, pr = np.median(tf) / (B * T), np.median(tr) / (B * T)
time_ratio, flop_ratio = pr / pf, r_fl / f_fl
print(f'frame YOLOv3-tiny x{a.width} at {S}²: {f_fl / 1e9:.3f} GFLOP/frame, {1e3 * pf:.2f} ms/frame (train step)')
print(f'Recurrent YOLO (late)        : {r_fl / 1e9:.3f} GFLOP/frame, {1e3 * pr:.2f} ms/frame (train step, T={T})')
print(f'time ratio {time_ratio:.2f} / FLOP ratio {flop_ratio:.2f} = {time_ratio / flop_ratio:.2f}  (target <= 1.15)')
print(f'epoch time, recurrent with 1 frame in {a.every} / frame model: {time_ratio / a.every:.2f}  (target <= 1.00)')
