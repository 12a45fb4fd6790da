"""Reliability battery, part 2: broken videos through `validate` and the training data path (issue 11; tests/README.md).

One native dataset references a good MJPG AVI and damaged media: a zero-byte file, random bytes named .mp4/.avi, an
AVI cut at 10/50/90 %, an MP4 cut at 50 % (an OpenCV .mp4 keeps its index — the moov box — at the end, so a cut
MP4 decodes nothing and is refused with that reason), an AVI with bytes overwritten in the middle, a frame folder
with an unreadable image and an image of another size, and a raw MJPEG stream whose frame size changes half-way.

- `restaurant-actions validate` (check_files) opens every video and decodes its first frame: files that cannot be
  opened are listed, one line each naming the file; damage later in a file is not looked for (that needs a full
  decode) and is reported when the frame cache is built.
- The training path (`FrameCache.build`, then `FrameDataset` / `ClipDataset`) decodes what it can: missing frames are
  filled with the previous good one and listed (`FrameCache.valid`, `FrameCache.report`); an undecodable video
  stops the build with a `VideoError` naming the file (or is listed in `failed` with `errors='warn'`).
Every call runs under an alarm: a hang fails the test instead of blocking the suite.
`detect` (streaming inference) is covered by 22_inference, not here.
"""
import contextlib, os, signal, subprocess, sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from restaurant_actions.data.annotations import AnnotationError, Dataset, Tube, Video, load_dataset
from restaurant_actions.data.datasets import ClipDataset, FrameDataset
from restaurant_actions.data.video import FrameCache, VideoError, VideoWriter, decode_video

EXE = Path(sys.executable).parent/'restaurant-actions'
W, H, N = 96, 64, 30
UNOPENABLE = ('zero', 'rand_mp4', 'rand_avi', 'cut50_mp4')            # refused by validate and by the cache build


@contextlib.contextmanager
def time_limit(seconds: float):
    def handler(*_): raise TimeoutError(f'took longer than {seconds} s (hang?)')
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try: yield
    finally: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)


def numbered(i, size=(W, H)):
    "Frame `i` showing its number in six black/white 8x8 blocks on the top row, on a textured background."
    rng = np.random.default_rng(i)
    f = rng.integers(60, 200, (size[1], size[0], 3), dtype=np.uint8)
    f[:10] = 128
    for b in range(6): f[1:9, 8 * b:8 * b + 8] = 255 * ((i >> b) & 1)
    return f


def number_of(f): return sum(int(f[3:7, 8 * b + 2:8 * b + 6].mean() > 128) << b for b in range(6))


def make_media(d: Path) -> dict:
    "`{video id: (file name, num_frames)}` of the damaged media written into `d/videos`."
    v = d/'videos'; v.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for ext in ('.avi', '.mp4'):
        with VideoWriter(v/f'good{ext}', 10, (W, H)) as w:
            for i in range(N): w.write(numbered(i))
    avi, mp4 = (v/'good.avi').read_bytes(), (v/'good.mp4').read_bytes()
    (v/'zero.mp4').write_bytes(b'')
    (v/'rand.mp4').write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (v/'rand.avi').write_bytes(rng.integers(0, 256, 20000, dtype=np.uint8).tobytes())
    for pct in (10, 50, 90): (v/f'cut{pct}.avi').write_bytes(avi[:len(avi) * pct // 100])
    (v/'cut50.mp4').write_bytes(mp4[:len(mp4) // 2]); (v/'good.mp4').unlink()
    b = bytearray(avi); m = len(b) // 2; b[m:m + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (v/'mid.avi').write_bytes(bytes(b))
    (v/'frames').mkdir()
    for i in range(N): cv2.imwrite(str(v/'frames'/f'{i:06d}.jpg'), cv2.cvtColor(numbered(i), cv2.COLOR_RGB2BGR))
    (v/'frames'/'000007.jpg').write_bytes(b'\xff\xd8 not a jpeg any more')
    cv2.imwrite(str(v/'frames'/'000012.jpg'), cv2.cvtColor(numbered(12, (2 * W, 2 * H)), cv2.COLOR_RGB2BGR))
    with open(v/'cat.mjpeg', 'wb') as f:                                  # a stream whose frame size changes
        for i in range(N): f.write(cv2.imencode('.jpg', numbered(i, (W, H) if i < N // 2 else (W + 32, H + 16)))[1].tobytes())
    files = dict(good='good.avi', zero='zero.mp4', rand_mp4='rand.mp4', rand_avi='rand.avi', cut10='cut10.avi',
                 cut50='cut50.avi', cut90='cut90.avi', cut50_mp4='cut50.mp4', mid='mid.avi', frames='frames', cat='cat.mjpeg')
    return files


@pytest.fixture(scope='module')
def media(tmp_path_factory):
    "A native dataset over the damaged media: one tube per video (frames 0..N-1)."
    d = tmp_path_factory.mktemp('broken')/'ds'
    files = make_media(d)
    videos = [Video(k, f'videos/{f}', 10.0, W, H, N) for k, f in files.items()]
    tubes = [Tube(i, k, 0, range(N), [[10, 10, 40, 40]] * N) for i, k in enumerate(files)]
    ds = Dataset(['act'], videos, tubes, root=d)
    ds.save(d)
    return ds


def test_validate_cli_names_each_undecodable_video(media):
    "One run of the installed command: exit 2, one line per unopenable video naming it, the decodable ones not listed."
    r = subprocess.run([str(EXE), 'validate', str(media.root)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == f'{len(UNOPENABLE)} problems found', lines
    ids = [v.id for v in media.videos]
    for line, k in zip(lines[:-1], UNOPENABLE):
        path = media.video_path(k)
        assert line.startswith(f'{media.root}/annotations.json:$.videos[{ids.index(k)}].file: {path}: '), line
    assert 'empty file (0 bytes)' in lines[0] and 'moov box' in lines[3], lines


def test_validate_in_process(media):
    "The same through `load_dataset(check_files=True)`; with the unopenable videos removed the rest validates."
    with time_limit(60), pytest.raises(AnnotationError) as e: load_dataset(media.root, check_files=True)
    assert [p.split('.file: ')[0].rsplit('[', 1)[1] for p in e.value.problems] == \
           [f'{[v.id for v in media.videos].index(k)}]' for k in UNOPENABLE]
    ok = Dataset(media.classes, [v for v in media.videos if v.id not in UNOPENABLE],
                 [t for t in media.tubes if t.video not in UNOPENABLE], root=media.root)
    from restaurant_actions.data.annotations import validate_dataset
    with time_limit(60): validate_dataset(ok, check_files=True)


@pytest.fixture(scope='module')
def cache(media, tmp_path_factory):
    "The frame cache of every decodable video at 48x32 (what training reads)."
    fc = FrameCache(tmp_path_factory.mktemp('cache'), size=(48, 32))
    with time_limit(120): out = fc.build(media, errors='warn', progress=False)
    return fc, out


def test_cache_build_refuses_undecodable_naming_the_file(media, cache, tmp_path):
    fc, out = cache
    assert sorted(out['failed']) == sorted(UNOPENABLE), out
    for k, msg in out['failed'].items(): assert msg.startswith(f'{media.video_path(k)}: '), msg
    assert 'empty file (0 bytes)' in out['failed']['zero'] and 'moov box' in out['failed']['cut50_mp4']
    for k in UNOPENABLE:                                      # errors='raise' (the default): a VideoError naming the file
        with time_limit(30), pytest.raises(VideoError, match=str(media.video_path(k))):
            FrameCache(tmp_path/k).build(media, size=(48, 32), videos=[k], progress=False)
        assert not list((tmp_path/k).glob('*.npy')), 'a failed build left an array behind'


def test_cache_reports_what_was_not_decodable(media, cache):
    "Each decodable video is cached; what could not be decoded is listed (valid mask, report) and filled."
    fc, out = cache
    assert sorted(out['built']) == sorted(set(v.id for v in media.videos) - set(UNOPENABLE))
    for k in out['built']:
        valid, rep = fc.valid(k), fc.report(k)
        assert len(valid) == N and rep.expected == N
        assert rep.decoded == valid.sum() and rep.missing == N - valid.sum(), (k, str(rep))    # report and mask agree
        assert np.array_equal(np.flatnonzero(~valid), rep.missing_frames()), (k, str(rep))
    assert fc.report('good').clean and fc.valid('good').all()
    for pct, lo, hi in ((10, 0, 8), (50, 8, 22), (90, 20, 29)):           # a cut AVI: its decodable prefix
        v = fc.valid(f'cut{pct}')
        assert lo <= v.sum() <= hi and v[:v.sum()].all(), (pct, str(fc.report(f'cut{pct}')))
    assert 0 < (~fc.valid('mid')).sum() < N // 2, str(fc.report('mid'))   # overwritten middle: a few frames lost
    with time_limit(30):      # ... and after the damage the numbers may drift by a frame or two: AVI has no timestamps
        got = [(i, number_of(f)) for i, f in decode_video(media.video_path('mid'))]
    assert max(abs(i - n) for i, n in got) <= 2 and [n for i, n in got[:10]] == list(range(10)), got
    rf = fc.report('frames')                                              # frame folder: one unreadable, one resized
    assert rf.failed == [[7, 7]] and rf.resized == 1 and any('frame 12 is 192x128' in m for m in rf.messages), str(rf)
    assert fc.valid('cat').all() and fc.report('cat').resized == 0        # FFmpeg rescales a size change itself
    frames = fc.frames('good')
    assert [number_of(cv2.resize(np.asarray(f), (W, H), interpolation=cv2.INTER_NEAREST)) for f in frames[:3]] == [0, 1, 2]


@pytest.mark.parametrize('kind', ['frame', 'clip'])
def test_training_datasets_read_every_item(media, cache, kind):
    "FrameDataset / ClipDataset over the cached videos: every item loads, finite, right shape, also on filled frames."
    fc, out = cache
    ok = Dataset(media.classes, [media.video(k) for k in out['built']], [t for t in media.tubes if t.video in out['built']],
                 root=media.root)
    d = FrameDataset(ok, fc) if kind == 'frame' else ClipDataset(ok, fc, T=4, frame_step=2)
    assert len(d) == N * len(out['built'])
    with time_limit(60):
        for i in range(len(d)):
            x = d[i]['image' if kind == 'frame' else 'clip']
            assert x.shape == ((3, 32, 48) if kind == 'frame' else (3, 4, 32, 48)) and torch.isfinite(x).all()
    bad = Dataset(media.classes, [media.video('zero')], [], root=media.root)
    with pytest.raises(VideoError, match="video 'zero' is not cached"):  # a video that failed to build is named
        (FrameDataset(bad, fc) if kind == 'frame' else ClipDataset(bad, fc, T=4))[0]


@pytest.mark.parametrize('ext', ['.avi', '.mp4', '.mkv', '.mov', '.mjpeg'])
def test_decoder_never_hangs_on_garbage(tmp_path, ext):
    "Random bytes, alone or after a valid header: a VideoError naming the file, or a finite iteration with a report."
    rng = np.random.default_rng(len(ext))
    with VideoWriter(tmp_path/'h.avi', 10, (32, 24)) as w:
        for i in range(3): w.write(numbered(i, (32, 24))[:24, :32])
    head = (tmp_path/'h.avi').read_bytes()[:512]
    for k in range(6):
        f = tmp_path/f'g{k}{ext}'
        body = rng.integers(0, 256, int(rng.integers(1, 40000)), dtype=np.uint8).tobytes()
        f.write_bytes((head if k % 2 else b'') + body)
        with time_limit(30):
            try: dec = decode_video(f, expected=50, stop=50)
            except VideoError as e: assert str(e).startswith(str(f)); continue
            got = sum(1 for _ in dec)
            assert got == dec.report.decoded and dec.report.decoded + dec.report.missing == 50, str(dec.report)
