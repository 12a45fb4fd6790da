"""Inference on video (chapter 22), measured side by side in one run (variants alternate; no assertions):

1. this machine's conv peak (conv3d and conv2d, fp32, GFLOP/s), to judge the figures below;
2. YOWO forward throughput on 16x224x224 clips, the fast path (BatchNorm folded, channels-last, inference mode)
   and bf16 autocast (where the CPU has native bf16) against plain eager fp32, with the achieved GFLOP/s
   (FLOPs from registry.count_flops: multiply-add = 2);
3. end-to-end `detect_video` frames/s on a 2-minute synthetic video (320x240): a small YOLOv3-tiny and a tiny YOWO;
4. peak memory (RSS high-water mark, each run in its own subprocess) of detection on a 1-minute vs a 10-minute
   video: it must not grow with the length;
5. the quick profile's detectors side by side (issue 23's fair cost): the frame baseline, the Recurrent YOLO
   (one pass per frame, its state carried frame to frame) at both placements and YOWO (a clip per key frame), each
   detecting on every frame of the same video at the profile's input: GFLOPs per frame and end-to-end frames/s.

`python bench/bench_inference.py [--quick] [--threads N]`; about 6-8 minutes on 2 cores, `--quick` about 2.
"""
import argparse, json, os, resource, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from restaurant_actions.data.synthetic import SynthConfig, make_synthetic
from restaurant_actions.inference import Detector, InferenceOptions, detect_video
from restaurant_actions.models.registry import build_model, count_flops, save_checkpoint


def med(ts): return float(np.median(ts))


def bf16_native() -> bool:
    "Does this CPU have native bf16 arithmetic (AVX512-BF16 or AMX)? Without it bf16 autocast is slower, not faster."
    try: return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError: return False


def conv_peak(reps: int) -> dict:
    "Best GFLOP/s of a large conv3d and conv2d (fp32; default and channels-last layouts)."
    out = {}
    cases = dict(conv3d=(nn.Conv3d(64, 64, 3, padding=1, bias=False), torch.rand(1, 64, 8, 56, 56), torch.channels_last_3d),
                 conv2d=(nn.Conv2d(256, 256, 3, padding=1, bias=False), torch.rand(1, 256, 56, 56), torch.channels_last))
    for name, (m, x, fmt) in cases.items():
        m.eval(); flops = count_flops(m, x)
        mc, xc = m.to(memory_format=fmt) if x.ndim == 4 else _cl3d(m), x.contiguous(memory_format=fmt)
        best = 0.0
        with torch.inference_mode():
            m(x); mc(xc)
            for _ in range(reps):
                for mm, xx in ((m, x), (mc, xc)):
                    t = time.perf_counter(); mm(xx); best = max(best, flops / (time.perf_counter() - t) / 1e9)
        out[name] = best
    return out


def _cl3d(m):
    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last_3d); return m


def yowo_throughput(quick: bool, peak: float):
    print('\n== YOWO forward, clips 16x224x224 (YOWO ResNet-18-3D + Darknet-19, full widths, 24 classes), fp32 unless noted')
    m = build_model('yowo', num_classes=24, backbone_3d='resnet18', T=16)
    variants = dict(plain=InferenceOptions.plain(), fast=InferenceOptions())
    if bf16_native(): variants['fast+bf16'] = InferenceOptions(amp='bf16')
    dets = {k: Detector(m, size=224, T=16, options=o) for k, o in variants.items()}
    del m
    for B, reps in ((1, 1 if quick else 3), (8, 0 if quick else 1)):
        if not reps: print(f'batch {B}: skipped (--quick)'); continue
        x = torch.rand(B, 3, 16, 224, 224)
        flops = count_flops(dets['plain'].model, x)
        ts = {k: [] for k in dets}
        if B == 1:
            for d in dets.values(): d.forward(x)          # warm-up (oneDNN primitives, first touch)
        for _ in range(reps):                             # alternate, so machine noise hits all alike
            for k, d in dets.items():
                t = time.perf_counter(); d.forward(x); ts[k].append(time.perf_counter() - t)
        base = med(ts['plain'])
        for k, v in ts.items():
            s = med(v)
            print(f'batch {B}: {k:10s} {s / B:7.3f} s/clip  {B / s:6.2f} clips/s  {flops / s / 1e9:6.1f} GFLOP/s '
                  f'({100 * flops / s / 1e9 / peak:4.0f}% of the conv3d peak)  speed-up vs plain {base / s:4.2f}x'
                  + (f'  [{reps} runs]' if k == 'plain' else ''))
        print(f'batch {B}: {flops / B / 1e9:.1f} GFLOPs per clip')
    del dets


def e2e(d: Path, quick: bool):
    minutes = 0.5 if quick else 2.0
    print(f'\n== End-to-end detect_video on a {minutes:g}-minute synthetic video, 320x240 at 15 fps (decode, resize, model, '
          'decode boxes, CSV, tubes, annotated.mp4); untrained weights, so at most 10 boxes a frame are kept (max_det), '
          'about what a trained model reports')
    t = time.perf_counter()
    ds = make_synthetic(d/'e2e', SynthConfig(minutes=minutes, fps=15, size=(320, 240), views=1, classes=8,
                                             segment_minutes=minutes), progress=False)
    vid = ds.video_path(ds.videos[0]); n = ds.videos[0].num_frames
    print(f'generated {n} frames in {time.perf_counter() - t:.1f} s')
    classes = ds.classes[:8]
    cfgs = [('yolov3_tiny width 0.5, 224x224, batch 1', build_model('yolov3_tiny', num_classes=8, width=0.5), 224, 1, 1,
             200 if quick else None),
            ('yowo r18-3D width 0.25, T=8, 128x128, batch 4', build_model('yowo', num_classes=8, backbone_3d='resnet18',
                                                                          width_mult=0.25, T=8), 128, 8, 4, 48 if quick else 240)]
    for name, model, size, T, batch, maxf in cfgs:
        r = {}
        for k, opts in (('plain', InferenceOptions.plain()), ('fast', InferenceOptions())):
            det = Detector(model, classes, size=size, T=T, options=opts)
            s = detect_video(vid, detector=det, out_dir=d/f'out_{k}', batch=batch, max_frames=maxf, max_det=10, overwrite=True,
                             progress=False, verbose=False)
            r[k] = s
        frames = r['fast']['frames']
        print(f"{name}: {frames} frames; plain {r['plain']['fps']:.1f} frames/s, fast {r['fast']['fps']:.1f} frames/s "
              f"(x{r['fast']['fps'] / r['plain']['fps']:.2f}); model share of the time {r['fast']['model_seconds'] / r['fast']['seconds']:.0%} (fast)")


def quick_models(d: Path, quick: bool):
    from restaurant_actions.experiments import get_profile
    from restaurant_actions.runs import RECURRENTS, recurrent_config, train_config
    p = get_profile('quick')
    minutes = 0.25 if quick else 1.0
    print(f"\n== The quick profile's detectors on every frame of a {minutes:g}-minute synthetic video (320x240 at 10 fps), "
          f"input {p.input_size[0]}x{p.input_size[1]}, batch 1, the fast path; untrained weights (max_det 10)")
    ds = make_synthetic(d/'quick', SynthConfig(minutes=minutes, fps=10, size=(320, 240), views=1, classes=8,
                                               segment_minutes=minutes), progress=False)
    vid, classes = ds.video_path(ds.videos[0]), ds.classes[:8]
    rows = []
    for role, label, cfg in (('frame', 'frame YOLOv3-tiny', train_config(p, 'frame', classes)),
                             *(('sequence', f'Recurrent YOLO, {k}', recurrent_config(p, k, classes, 0, 10.0))
                               for k in RECURRENTS),
                             ('clip', 'YOWO', train_config(p, 'clip', classes))):
        m = build_model(cfg.model, num_classes=len(classes), **cfg.model_kwargs,
                        **(dict(T=cfg.T) if role == 'clip' else {}))
        T = cfg.T if role != 'frame' else 1
        shape = {'frame': (1, 3, 128, 128), 'sequence': (1, 1, 3, 128, 128), 'clip': (1, 3, T, 128, 128)}[role]
        g = count_flops(m.eval(), torch.zeros(shape)) / 1e9          # one frame (the Recurrent YOLO: one step)
        det = Detector(m, classes, size=tuple(p.input_size), T=T if role == 'clip' else 1,
                       frame_step=cfg.frame_step, options=InferenceOptions())   # motion: 3 chains of every 3rd frame
        s = detect_video(vid, detector=det, out_dir=d/f'q_{role}_{len(rows)}', batch=1, max_det=10, overwrite=True,
                         progress=False, verbose=False)
        rows.append((label, g, s['fps'], s['frames']))
    for label, g, fps, n in rows:
        print(f'{label:24s} {g:6.3f} GFLOPs/frame   {fps:6.1f} frames/s end to end ({n} frames)   '
              f'{g / rows[0][1]:4.2f}x the frame model\'s FLOPs, {rows[0][2] / fps:4.2f}x its time')


CHILD = '''
import sys, json
def hwm():   # VmHWM: this process's RSS high-water mark (ru_maxrss would carry the parent's over fork + exec)
    return int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1])
from restaurant_actions.inference import detect_video
base = hwm()
s = detect_video(sys.argv[1], sys.argv[2], sys.argv[3], conf_thresh=0.25, max_det=10, progress=False, verbose=False)
print(json.dumps(dict(peak_kb=hwm(), base_kb=base, frames=s['frames'], fps=s['fps'], detections=s['detections'], tubes=s['tubes'])))
'''


def memory(d: Path, quick: bool):
    lengths = (0.5, 5) if quick else (1, 10)
    print(f'\n== Peak RSS of detect_video, {lengths[0]}- vs {lengths[1]}-minute video (160x120 at 15 fps, yolov3_tiny width 0.25 at '
          '64x64, 3 classes, conf 0.25, at most 10 boxes a frame; each in its own process)')
    ck = save_checkpoint(d/'mem.pt', build_model('yolov3_tiny', num_classes=3, width=0.25), classes=['a', 'b', 'c'],
                         input_size=[64, 64], T=1)
    res = {}
    for mins in lengths:
        ds = make_synthetic(d/f'mem{mins}', SynthConfig(minutes=mins, fps=15, size=(160, 120), views=1, classes=3,
                                                        segment_minutes=mins), progress=False)
        vid = ds.video_path(ds.videos[0])
        out = subprocess.run([sys.executable, '-c', CHILD, str(vid), str(ck), str(d/f'memout{mins}')],
                             capture_output=True, text=True, check=True)
        res[mins] = r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{mins:4g} min: {r['frames']} frames at {r['fps']:.0f} frames/s, {r['detections']} detections, {r['tubes']} tubes; "
              f"peak RSS {r['peak_kb'] / 1024:.0f} MB (after imports {r['base_kb'] / 1024:.0f} MB)")
    a, b = res[lengths[0]], res[lengths[1]]
    print(f'peak RSS ratio {lengths[1]} min / {lengths[0]} min: {b["peak_kb"] / a["peak_kb"]:.3f} (target <= 1.1); '
          f'growth beyond imports {(b["peak_kb"] - b["base_kb"]) / 1024:.0f} MB vs {(a["peak_kb"] - a["base_kb"]) / 1024:.0f} MB')


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--quick', action='store_true', help='fewer repeats, batch 1 only, shorter videos')
    ap.add_argument('--threads', type=int, help='torch threads (default: torch\'s)')
    ap.add_argument('--skip', nargs='*', default=[], choices=('yowo', 'e2e', 'memory', 'quick_models'))
    a = ap.parse_args()
    if a.threads: torch.set_num_threads(a.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, '
          f'native bf16: {bf16_native()}')
    t0 = time.perf_counter()
    peak = conv_peak(2 if a.quick else 5)
    print(f"conv peak (fp32, best of default/channels-last): conv3d {peak['conv3d']:.0f} GFLOP/s, conv2d {peak['conv2d']:.0f} GFLOP/s")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        if 'yowo' not in a.skip: yowo_throughput(a.quick, peak['conv3d'])
        if 'e2e' not in a.skip: e2e(d, a.quick)
        if 'memory' not in a.skip: memory(d, a.quick)
        if 'quick_models' not in a.skip: quick_models(d, a.quick)
    print(f'\n(total {time.perf_counter() - t0:.0f} s)')


if __name__ == '__main__': main()
