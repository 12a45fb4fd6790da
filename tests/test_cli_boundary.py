"""The command line's boundary (issue 20): every case a new user found, as a named regression test.

Each runs `restaurant-actions` in-process (`cli.main`): bad input must end in exit 2 with one line `<where>: <what>`
(or a reader's problem lines and their count), never a traceback; nothing outside the destination changes, and a
refused or interrupted command leaves no debris.
"""
import contextlib, io, json, os, re, signal
from pathlib import Path

import numpy as np
import pytest

from restaurant_actions.cli import main
from restaurant_actions.core import MANIFEST


def run(*args, cwd=None):
    "`(exit code, stdout, stderr)` of the command line in this process; an exception escaping `main` fails the test."
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd: os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: code = main([str(a) for a in args])
            except SystemExit as e: code = e.code
    finally: os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict:
    "Every file and folder under `root` with its size and modification time."
    return {p.relative_to(root).as_posix(): (p.is_dir(), 0 if p.is_dir() else p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob('*'))}


def one_line(code, err, *want):
    "Exit 2, exactly one line on stderr, containing every string of `want`."
    assert code == 2, (code, err)
    assert 'Traceback' not in err and len(err.strip().splitlines()) == 1, err
    for w in want: assert w in err, (w, err)


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory):
    "A tiny synthetic dataset, a tiny checkpoint of it, a CVAT export, a foreign folder and a plain file."
    d = tmp_path_factory.mktemp('boundary')
    code, out, err = run('synth', '--out', d/'ds', '--minutes', 0.3, '--fps', 10, '--size', '160x128', '--views', 1,
                         '--segment-minutes', 0.3, '--classes', 6, '--seed', 1, '-q')
    assert code == 0, err
    from restaurant_actions.models.registry import build_model, save_checkpoint
    save_checkpoint(d/'tiny.pt', build_model('yolov3_tiny', num_classes=45, width=0.125))
    (d/'foreign').mkdir(); (d/'foreign/notes.txt').write_text('not ours')
    (d/'plain.txt').write_text('a file')
    return d


# --- data loss: convert --overwrite never removes what it did not write ---------------------------------------------

@pytest.mark.parametrize('where, msg', [('parent', 'contains the input'), ('same', 'is the input itself'),
                                        ('child', 'lies inside the input'), ('foreign', 'was not written by restaurant-actions')])
def test_convert_overwrite_never_deletes_foreign(sandbox, tmp_path, where, msg):
    src = tmp_path/'src'
    code, out, err = run('convert', sandbox/'ds', src)                       # a copy we may damage
    assert code == 0, err
    (tmp_path/'unrelated.txt').write_text('keep me'); (tmp_path/'foreign').mkdir(); (tmp_path/'foreign/a.txt').write_text('x')
    dst = dict(parent=tmp_path, same=src, child=src/'out', foreign=tmp_path/'foreign')[where]
    before = snapshot(tmp_path)
    code, out, err = run('convert', src, dst, '--overwrite')
    one_line(code, err, f'{dst}: {msg}')
    assert snapshot(tmp_path) == before


# --- 17 tracebacks ----------------------------------------------------------------------------------------------------

def test_tracebacks_become_one_line(sandbox, tmp_path):
    d = sandbox
    (tmp_path/'rand.json').write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8)))
    (tmp_path/'empty').mkdir(); (tmp_path/'empty/classes.txt').write_text('a\n')
    (tmp_path/'empty/annotations.json').write_text('{"schema_version": 1, "videos": [], "tubes": []}')
    (tmp_path/'folder').mkdir()
    cases = [(('validate', d/'ds', '-o', 'bogus=1'), 'option bogus: not an option here'),
             (('anchors', d/'ds', '--json', tmp_path/'folder'), f'--json: {tmp_path}/folder is a folder'),
             (('models', '--json', tmp_path/'folder'), '--json: '),
             (('eval', '--gt', tmp_path, '--det', tmp_path, '--json', tmp_path/'folder'), '--json: '),
             (('models', '--size', '0x0'), '--size: width and height must be >= 1'),
             (('models', '--size', '33x33'), '--size: '), (('models', '--size', '-64x64'), '--size: '),
             (('models', '--classes', 0), '--classes: '), (('models', '--T', 0), '--T: '),
             (('train', 'smoke', '--data', d/'ds', '--set', 'lr=-1', '-q'), '--set lr: must be'),
             (('train', 'smoke', '--role', 'yowo', '--backbone', 'nosuch', '--data', d/'ds', '-q'), 'nosuch'),
             (('train', tmp_path/'rand.json', '--data', d/'ds'), f'{tmp_path}/rand.json: not a JSON file'),
             (('train', 'smoke', '--data', tmp_path/'empty', '-q'), f'{tmp_path}/empty'),
             (('synth', '--out', tmp_path/'s', '--classes', 0), '--classes: must be'),
             (('detect', d/'plain.txt', '--weights', d/'tiny.pt', '--size', '0x0'), '--size: '),
             (('detect', d/'ds/videos/s00_c0.mp4', '--weights', d/'tiny.pt', '--device', 'bogus', '--out', tmp_path/'det'), '--device: '),
             (('eval', d/'tiny.pt', '--data', d/'ds', '--every', 0), '--every: must be an integer >= 1')]
    before = snapshot(tmp_path)
    for args, want in cases:
        code, out, err = run(*args)
        one_line(code, err, want)
    assert snapshot(tmp_path) == before


# --- 23 wrong answers to bad input ----------------------------------------------------------------------------------

@pytest.mark.parametrize('opt, value', [('--minutes', -1), ('--minutes', 0), ('--minutes', 1e12), ('--views', 0), ('--fps', 0),
                                        ('--workers', 0), ('--segment-minutes', 0), ('--classes', 100), ('--lookalikes', 7),
                                        ('--label-noise', 2)])
def test_synth_refuses_out_of_range(tmp_path, opt, value):
    code, out, err = run('synth', '--out', tmp_path/'s', opt, value)
    one_line(code, err, f'{opt}: must be')
    assert not (tmp_path/'s').exists()


def test_wrong_answers_refused(sandbox, tmp_path):
    d = sandbox
    (tmp_path/'frames').mkdir()
    for k in range(3): (tmp_path/'frames'/f'{k:05d}.jpg').write_bytes(b'not a jpeg')
    (tmp_path/'gt').mkdir(); (tmp_path/'det').mkdir()
    cases = [(('models', '--only', 'nosuchmodel'), 'nosuchmodel'),
             (('train', 'smoke', '--data', d/'ds', '--top-k', 0, '-q'), '--top-k: must be'),
             (('detect', tmp_path/'frames', '--weights', d/'tiny.pt', '--out', tmp_path/'o1', '-q'), 'no frame could be decoded'),
             (('detect', d/'ds/videos/s00_c0.mp4', '--weights', d/'tiny.pt', '--conf', 2), '--conf: '),
             (('detect', d/'ds/videos/s00_c0.mp4', '--weights', d/'tiny.pt', '--conf', -1), '--conf: '),
             (('detect', d/'ds/videos/s00_c0.mp4', '--weights', d/'tiny.pt', '--max-frames', -5), '--max-frames: '),
             (('detect', d/'ds/videos/s00_c0.mp4', '--weights', d/'tiny.pt', '--T', 0), '--T: '),
             (('eval', '--gt', tmp_path/'gt', '--det', tmp_path/'det'), 'no ground-truth boxes'),
             (('eval', '--gt', tmp_path/'gt', '--det', tmp_path/'det', '--iou', 2), '--iou: must be > 0 and <= 1'),
             (('eval', '--gt', tmp_path/'gt', '--det', tmp_path/'det', '--iou', -1), '--iou: must be > 0 and <= 1')]
    for args, want in cases:
        code, out, err = run(*args)
        one_line(code, err, want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['det', 'frames', 'gt']


def test_resume_with_fewer_steps_refused(sandbox, tmp_path):
    d = sandbox
    cfg = tmp_path/'cfg.json'
    cfg.write_text(json.dumps(dict(model='yolov3_tiny', model_kwargs=dict(width=0.125), input_size=[64, 64], steps=4,
                                   batch_size=2, warmup=1, eval_stride=16, checkpoint_every=2)))
    code, out, err = run('train', cfg, '--data', d/'ds', '--out', tmp_path/'run', '-q')
    assert code == 0, err
    stored = (tmp_path/'run/model.config.json').read_text()
    code, out, err = run('train', cfg, '--data', d/'ds', '--out', tmp_path/'run', '--resume', '--set', 'steps=2', '-q')
    one_line(code, err, 'steps')
    assert (tmp_path/'run/model.config.json').read_text() == stored          # the stored configuration is untouched


# --- debris ------------------------------------------------------------------------------------------------------------

def test_synth_interrupted_leaves_nothing(tmp_path, monkeypatch):
    import restaurant_actions.data.synthetic as syn
    calls = []
    real = syn.VideoWriter.write
    def write(self, frame):
        calls.append(1)
        if len(calls) == 20: raise KeyboardInterrupt
        return real(self, frame)
    monkeypatch.setattr(syn.VideoWriter, 'write', write)
    code, out, err = run('synth', '--out', tmp_path/'deep/s', '--minutes', 0.1, '--fps', 10, '--size', '64x64', '-q')
    assert code == 130 and err.strip() == 'interrupted', err
    assert list(tmp_path.iterdir()) == []


def test_synth_rerun_refused_or_replaced_whole(tmp_path):
    args = ('--minutes', 0.05, '--fps', 10, '--size', '64x64', '-q')
    assert run('synth', '--out', tmp_path/'s', '--segment-minutes', 0.025, *args)[0] == 0
    first = sorted(p.name for p in (tmp_path/'s/videos').iterdir())
    code, out, err = run('synth', '--out', tmp_path/'s', *args)
    one_line(code, err, f'{tmp_path}/s: exists and is not empty (--overwrite')
    assert run('synth', '--out', tmp_path/'s', '--overwrite', *args)[0] == 0
    second = sorted(p.name for p in (tmp_path/'s/videos').iterdir())
    assert len(first) > len(second) and second == sorted(json.loads((tmp_path/'s/annotations.json').read_text())['videos'][i]['file'].split('/')[-1]
                                                        for i in range(len(second)))   # no old video left beside the new ones


def test_detect_interrupted_and_bad_size_leave_nothing(sandbox, tmp_path, monkeypatch):
    d = sandbox
    code, out, err = run('detect', d/'ds/videos/s00_c0.mp4', '--weights', d/'tiny.pt', '--out', tmp_path/'a/det', '--size', '0x0')
    one_line(code, err, '--size: ')
    import restaurant_actions.inference as inf
    real = inf.TubeLinker.add
    seen = []
    def add(self, det):
        seen.append(det.frame)
        if len(seen) == 3: raise KeyboardInterrupt
        return real(self, det)
    monkeypatch.setattr(inf.TubeLinker, 'add', add)
    code, out, err = run('detect', d/'ds/videos/s00_c0.mp4', '--weights', d/'tiny.pt', '--out', tmp_path/'b/det', '--size', '64x64', '-q')
    assert code == 130, err
    assert list(tmp_path.iterdir()) == []


def test_report_refusals_create_nothing(tmp_path):
    for args, want in [(('--only', 'zz'), 'zz'), (('--notebooks', tmp_path/'none'), 'none'), (('--timeout', 0), '--timeout: '),
                       (('-p', 'lr=1'), '--param: ')]:
        code, out, err = run('report', '--profile', 'smoke', '--out', tmp_path/'rep', *args)
        one_line(code, err, want)
    assert list(tmp_path.iterdir()) == []


# --- unclear messages, help -------------------------------------------------------------------------------------------

def test_messages_read_like_the_command_line(sandbox, tmp_path):
    d = sandbox
    assert run('convert', d/'ds', tmp_path/'c')[0] == 0
    code, out, err = run('convert', d/'ds', tmp_path/'c')
    one_line(code, err, f'{tmp_path}/c: exists and is not empty (--overwrite replaces')
    code, out, err = run('anchors', d/'ds', '-k', 0)
    one_line(code, err, '-k: must be an integer >= 1')
    code, out, err = run('synth', '--out', tmp_path/'s', '--size', '0x0')
    one_line(code, err, '--size: width and height must be >= 1')
    code, out, err = run('synth', '--out', tmp_path/'s', '--size', '8x8')
    one_line(code, err, '--size: must be')
    assert not (tmp_path/'s').exists()
    assert 'Errno' not in run('validate', tmp_path/'nothing')[2]
    m = os.umask(0o027); os.umask(m)
    for p in (tmp_path/'c', tmp_path/'c/annotations.json'):
        assert p.stat().st_mode & 0o777 == (0o777 if p.is_dir() else 0o666) & ~m, (p, oct(p.stat().st_mode))


def test_help_documents_every_option():
    from restaurant_actions.cli import build_parser
    p = build_parser()
    sub = next(a for a in p._actions if a.choices)
    for name, sp in sub.choices.items():
        for act in sp._actions:
            assert act.help, f'{name} {act.option_strings or act.dest}: no help text'
    code, out, err = run('report', '--help')
    assert code == 0 and 'quick' in out and 'default: quick' in out.replace('\n', ' ').replace('  ', ' ')
    code, out, err = run('train', '--help')
    assert '--set keys (TrainConfig fields): model, model_kwargs' in out
    code, out, err = run('synth', '--help')
    assert '> 0 and <= 600; default 1.0' in ' '.join(out.split())
