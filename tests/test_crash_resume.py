"""Reliability battery, part 3: crashes (issue 11; table in tests/README.md).

(a) A training *process* is killed with SIGKILL at a seeded step, resumed, and must end bit for bit where an
    uninterrupted run ends (CPU, deterministic mode, one thread in every process).
(b) A crash while a checkpoint is being written — an exception inside `torch.save`, or SIGKILL of a process blocked
    half-way through writing — never leaves a checkpoint that loads wrongly: the previous `.last.pt` still loads and
    resumes, and the partial temporary file is neither picked up nor loadable.
(c) One failing notebook of a papermill batch (`restaurant-actions report`) does not stop the others; it is reported.

Every process trains a `yolov3_tiny` (width 0.125) at 64x64 on an 18-second synthetic video: a run takes under a
second, the rest is Python start-up. Slow cases (`RESTAURANT_ACTIONS_TEST_FLAGS=slow`) add more kill points, a double
crash, the sequence (Recurrent YOLO) and clip (YOWO) families, and kills at random times of a process that writes a
large checkpoint over and over.
"""
import io, json, os, random, signal, subprocess, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers import tensors_differ as same, tiny_training_data
import torch

from restaurant_actions.data.splits import block_split
from restaurant_actions.data.synthetic import SynthConfig, make_synthetic
from restaurant_actions.data.video import FrameCache
from restaurant_actions.models.registry import CheckpointError, load_checkpoint
from restaurant_actions.train import Trainer, TrainConfig

SLOW = 'slow' in os.environ.get('RESTAURANT_ACTIONS_TEST_FLAGS', '').split()
EXE = Path(sys.executable).parent/'restaurant-actions'
TIMEOUT = 300                     # per child process: the CPU may be shared with other heavy jobs
STEPS = 12
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1', PYTHONUNBUFFERED='1')

FAMILIES = {   # model, model_kwargs and the other fields that differ per family
    'frame': dict(model='yolov3_tiny', model_kwargs=dict(width=0.125), batch_size=4),
    'sequence': dict(model='recurrent_yolov3_tiny', model_kwargs=dict(width=0.125), batch_size=2, T=4,
                     clip_min=20, clip_max=60, clip_pad=5),
    'clip': dict(model='yowo', model_kwargs=dict(backbone_3d='resnet18', width_mult=0.25, width_2d=0.125, cfam_channels=32),
                 batch_size=2, T=4),
}


def train_config(family='frame', **over) -> TrainConfig:
    "The tiny run: 12 steps, checkpoints every 2, EMA on (its state must resume too), augmentation on (RNG state)."
    base = dict(input_size=[64, 64], steps=STEPS, checkpoint_every=2, warmup=2, eval_stride=8, ema=0.9, device='cpu',
                deterministic=True, seed=0)
    return TrainConfig(**{**base, **FAMILIES[family], **over})


CHILD = r'''
import io, json, os, sys, time
import torch
torch.set_num_threads(1)
from restaurant_actions.data.annotations import load_dataset
from restaurant_actions.data.splits import block_split
from restaurant_actions.data.video import FrameCache
from restaurant_actions.train import Trainer, TrainConfig

a = json.loads(sys.argv[1])
ds = load_dataset(a['data']); cache = FrameCache(a['cache'], size=(64, 64))
split = block_split(ds, test_fraction=0.2, block=40, seed=0)
tr = Trainer(TrainConfig.from_dict(a['cfg']), ds, cache, split, a['out'], name='run', progress=False)

upd = tr._update
def announce(micro):                        # "step k" once step k's update is done (its checkpoint, if any, follows)
    r = upd(micro); print(f'step {tr.step + 1}', flush=True); return r
tr._update = announce

real_save, saves = torch.save, [0]
def save(obj, f, *args, **kw):             # the `torch.save` behind save_checkpoint (called inside core.atomic_write)
    saves[0] += 1
    if saves[0] != a.get('hang_in_save'): return real_save(obj, f, *args, **kw)
    buf = io.BytesIO(); real_save(obj, buf, *args, **kw); data = buf.getvalue()
    f.write(data[:len(data) // 2]); f.flush(); os.fsync(f.fileno())
    print(f'writing {saves[0]} {f.name}', flush=True)   # half of the file is on disk: the parent kills us now
    time.sleep(600)
torch.save = save

tr.fit(resume=True)
print('done', flush=True)
'''


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "An 18-s single-view synthetic video (6 classes), its frame cache at 64x64, and the child training script."
    d = tmp_path_factory.mktemp('crash')
    ds, cache, split = tiny_training_data(d)
    (d/'child.py').write_text(CHILD)
    return dict(root=d, ds=ds, cache=cache, split=split)


def child(data, out, cfg, kill_on=None, hang_in_save=None) -> dict:
    """Run the training script into `out` (always with resume=True); SIGKILL it as soon as it prints a line starting
    with `kill_on`. Returns its return code and every line it printed (including those printed before it died)."""
    args = dict(data=str(data['root']/'data'), cache=str(data['root']/'cache'), out=str(out), cfg=cfg.to_dict(),
                hang_in_save=hang_in_save)
    err = open(Path(out).parent/f'{Path(out).name}.stderr', 'a')
    p = subprocess.Popen([sys.executable, str(data['root']/'child.py'), json.dumps(args)], stdout=subprocess.PIPE,
                         stderr=err, text=True, env=ENV)
    timed_out = []
    timer = threading.Timer(TIMEOUT, lambda: (timed_out.append(1), p.kill())); timer.start()
    lines, killed_after = [], None
    try:
        for line in p.stdout:
            lines.append(line.strip())
            if kill_on and killed_after is None and lines[-1].startswith(kill_on):
                os.kill(p.pid, signal.SIGKILL); killed_after = lines[-1]
        p.wait()
    finally:
        timer.cancel(); err.close()
    assert not timed_out, f'{out}: no result within {TIMEOUT} s (hang?); printed {lines[-3:]}'
    if p.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f'{out}: exit {p.returncode}\n' + (Path(out).parent/f'{Path(out).name}.stderr').read_text()[-3000:])
    return dict(rc=p.returncode, lines=lines, killed_after=killed_after)


def load(path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=True)


def assert_same_run(ref_dir, got_dir):
    """Final weights, optimizer, EMA, data position, losses and best checkpoint: bit for bit equal. Not compared: the
    per-step `samples_per_s` (wall clock)."""
    a, b = load(ref_dir/'run.last.pt'), load(got_dir/'run.last.pt')
    assert a['step'] == b['step'] == STEPS
    for h in a['history'] + b['history']: h.pop('samples_per_s')          # wall clock
    diff = same(a, b)
    assert not diff, f'{got_dir.name} differs from the uninterrupted run at {diff[:8]}'
    diff = same(load(ref_dir/'checkpoint_run.pt'), load(got_dir/'checkpoint_run.pt'))
    assert not diff, f'{got_dir.name}: best checkpoint differs at {diff[:8]}'


def check_after_kill(out, r) -> int:
    "What a SIGKILL leaves: a loadable `.last.pt` (or none yet), no summary; returns the checkpoint's step (0: none)."
    assert r['rc'] == -signal.SIGKILL, f"{out}: the run ended before the kill ({r['lines'][-3:]})"
    assert not (out/'run.summary.json').exists()
    if not (out/'run.last.pt').exists(): return 0
    ck = load(out/'run.last.pt')
    assert ck['step'] % 2 == 0 and ck['step'] < STEPS and len(ck['history']) == ck['step']
    m, _ = load_checkpoint(out/'run.last.pt')                            # the public loader agrees
    assert all(torch.isfinite(v).all() for v in m.state_dict().values() if v.is_floating_point())
    return ck['step']


def scenario(data, root, name, cfg, kills) -> dict:
    "Crash the run at each of `kills` in turn (`('step', k)` or `('save', n)`), resuming each time, then finish it."
    out, log = root/name, []
    for kind, k in kills:
        r = (child(data, out, cfg, kill_on=f'step {k}') if kind == 'step'
             else child(data, out, cfg, kill_on='writing', hang_in_save=k))
        before = r['lines'][r['lines'].index(r['killed_after']) + 1:]     # steps printed between the signal and death
        step = check_after_kill(out, r)
        tmps = sorted(p.name for p in out.glob('.*.tmp'))
        if kind == 'save':                                               # killed half-way through writing checkpoint n
            assert len(tmps) == 1 and tmps[0].startswith('.run.last.pt.'), tmps
            assert not log and step == 2 * (k - 1), (step, log)       # (only used as the first crash of a run)
            with pytest.raises(CheckpointError, match='not a readable PyTorch checkpoint'):
                load_checkpoint(out/tmps[0])                             # the partial file cannot pass for a checkpoint
        assert sorted(p.name for p in out.glob('*.pt')) == ['run.last.pt'] * bool(step), list(out.iterdir())
        log.append(dict(kill=f'{kind} {k}', checkpoint_step=step, printed_after_signal=len(before), temporaries=tmps))
    r = child(data, out, cfg)
    assert r['rc'] == 0 and r['lines'][-1] == 'done', r
    first = int(r['lines'][0].split()[1]) if r['lines'][0].startswith('step') else None
    assert first == log[-1]['checkpoint_step'] + 1, (first, log)        # the resumed run starts after its checkpoint
    # a temporary file of a write killed by SIGKILL stays (nothing can remove it at the time); it is never read
    return dict(name=name, crashes=log, temporaries_after_resume=sorted(p.name for p in out.glob('.*.tmp')))


def run_scenarios(data, root, family, scenarios):
    "An uninterrupted reference run and every crash scenario, concurrently (one thread each); all end equal."
    cfg = train_config(family)
    with ThreadPoolExecutor(len(scenarios) + 1) as pool:
        ref = pool.submit(child, data, root/'reference', cfg)
        futs = [pool.submit(scenario, data, root, name, cfg, kills) for name, kills in scenarios.items()]
        assert ref.result()['lines'][-1] == 'done'
        logs = [f.result() for f in futs]
    for name in scenarios: assert_same_run(root/'reference', root/name)
    print(json.dumps(logs))
    return logs


def test_kill9_then_resume_is_bitwise_equal(data, tmp_path):
    "Frame model: SIGKILL after a seeded step, and SIGKILL half-way through writing the 3rd checkpoint (step 6)."
    rng = random.Random(11)
    scenarios = {'kill_at_step': [('step', rng.randint(3, STEPS - 4))], 'kill_in_save': [('save', 3)]}
    if SLOW:
        scenarios.update({f'kill_at_step_{k}': [('step', k)] for k in rng.sample(range(1, STEPS - 3), 3)})
        scenarios['double_crash'] = [('step', rng.randint(2, 5)), ('step', rng.randint(7, STEPS - 4))]
        scenarios['kill_in_first_save'] = [('save', 1)]
    logs = run_scenarios(data, tmp_path, 'frame', scenarios)
    assert logs[1]['crashes'][0]['checkpoint_step'] == 4 and logs[1]['crashes'][0]['temporaries']


@pytest.mark.skipif(not SLOW, reason='slow: set RESTAURANT_ACTIONS_TEST_FLAGS=slow')
@pytest.mark.parametrize('family', ['sequence', 'clip'])
def test_kill9_then_resume_other_families(data, tmp_path, family):
    "Recurrent YOLO (LSTM state and stream position in the checkpoint) and YOWO: kill at a step and in a save."
    rng = random.Random(12)
    run_scenarios(data, tmp_path, family, {'kill_at_step': [('step', rng.randint(3, STEPS - 4))],
                                           'kill_in_save': [('save', 2)]})


def stop_and_resume(data, root, cfg, stop_after=5):
    "In-process: an uninterrupted run, and a run stopped after `stop_after` steps then resumed (the notebook's check)."
    a = Trainer(cfg, data['ds'], data['cache'], data['split'], root/'a', name='run', progress=False); a.fit()
    Trainer(cfg, data['ds'], data['cache'], data['split'], root/'b', name='run', progress=False).fit(stop_after=stop_after)
    c = Trainer(cfg, data['ds'], data['cache'], data['split'], root/'b', name='run', progress=False); c.fit(resume=True)
    return load(root/'a/run.last.pt'), load(root/'b/run.last.pt')


def test_resume_restores_the_global_rng(data, tmp_path):
    "After a resume the global generators are where the uninterrupted run has them (else any random op diverges)."
    a, b = stop_and_resume(data, tmp_path, train_config(steps=8))
    assert same(a['rng'], b['rng']) == []


@pytest.mark.skipif(not SLOW, reason='slow: set RESTAURANT_ACTIONS_TEST_FLAGS=slow')
def test_resume_yowo_is_bitwise_equal(data, tmp_path):
    "YOWO has dropout in its fusion block (CFAM): its resumed run must still end bit for bit where the uninterrupted one does."
    a, b = stop_and_resume(data, tmp_path, train_config('clip', steps=6))
    assert same(a['model'], b['model']) == []


# ---- (b) a failure inside torch.save, in-process

@pytest.mark.parametrize('exc', [OSError(28, 'No space left on device'), KeyboardInterrupt()], ids=['ENOSPC', 'Ctrl-C'])
def test_failure_inside_torch_save(data, tmp_path, monkeypatch, exc):
    """`torch.save` writes half of checkpoint 3 (step 6), then raises: the error reaches the caller, the temporary file
    is removed, `.last.pt` is still step 4, and resuming from it ends where an uninterrupted run ends."""
    cfg = train_config()
    ref = Trainer(cfg, data['ds'], data['cache'], data['split'], tmp_path/'ref', name='run', progress=False); ref.fit()
    real, n = torch.save, [0]
    def failing(obj, f, *a, **kw):
        n[0] += 1
        if n[0] != 3: return real(obj, f, *a, **kw)
        buf = io.BytesIO(); real(obj, buf, *a, **kw); f.write(buf.getvalue()[:len(buf.getvalue()) // 2]); f.flush()
        raise exc
    monkeypatch.setattr(torch, 'save', failing)
    out = tmp_path/'crash'
    tr = Trainer(cfg, data['ds'], data['cache'], data['split'], out, name='run', progress=False)
    with pytest.raises(type(exc)): tr.fit()
    monkeypatch.setattr(torch, 'save', real)
    assert sorted(p.name for p in out.iterdir()) == ['run.last.pt'], 'a temporary file was left behind'
    assert load(out/'run.last.pt')['step'] == 4
    load_checkpoint(out/'run.last.pt')
    tr = Trainer(cfg, data['ds'], data['cache'], data['split'], out, name='run', progress=False); tr.fit(resume=True)
    assert tr.history[0]['step'] == 1 and len(tr.history) == STEPS
    assert_same_run(tmp_path/'ref', out)


SAVER = r'''
import sys, torch
from restaurant_actions.models.registry import build_model, save_checkpoint
m = build_model('yolov3_tiny', num_classes=3, width=0.25)
pad = torch.arange(int(sys.argv[2]), dtype=torch.float32)     # makes the file large, so a kill lands inside a write
for i in range(1, 10**6):
    save_checkpoint(sys.argv[1], m, step=i, pad=pad)
    print(f'saved {i}', flush=True)
'''


@pytest.mark.skipif(not SLOW, reason='slow: set RESTAURANT_ACTIONS_TEST_FLAGS=slow')
def test_kill9_at_random_times_while_writing(tmp_path):
    """A process writes a 64 MB checkpoint over and over (the real `torch.save`, no hooks); it is killed at seeded
    random delays after its first complete write. Every time the file holds a complete earlier write."""
    (tmp_path/'saver.py').write_text(SAVER)
    rng, leftovers = random.Random(13), 0
    for case in range(6):
        d = tmp_path/f'c{case}'; d.mkdir(); path = d/'big.pt'
        p = subprocess.Popen([sys.executable, str(tmp_path/'saver.py'), str(path), str(16 * 2**20)], stdout=subprocess.PIPE,
                             text=True, env=ENV)
        timer = threading.Timer(TIMEOUT, p.kill); timer.start()
        try:
            assert p.stdout.readline().strip() == 'saved 1'
            time.sleep(rng.uniform(0, 1.5)); os.kill(p.pid, signal.SIGKILL)
            done = ['saved 1'] + [l.strip() for l in p.stdout]; p.wait()
        finally: timer.cancel()
        m, ck = load_checkpoint(path)
        last = int(done[-1].split()[1])
        assert ck['step'] in (last, last + 1) and ck['pad'].shape == (16 * 2**20,) and torch.equal(ck['pad'][-3:], torch.tensor([16 * 2**20 - 3., 16 * 2**20 - 2., 16 * 2**20 - 1.]))
        tmps = list(d.glob('.*.tmp')); leftovers += len(tmps)
        assert sorted(d.glob('*.pt')) == [path] and len(tmps) <= 1
        for t in tmps:
            with pytest.raises(CheckpointError): load_checkpoint(t)
    print(f'{leftovers} of 6 kills landed inside a write')


# ---- (c) a failing experiment notebook in the batch, through the installed command

def test_report_cli_goes_on_after_a_failing_notebook(tmp_path):
    """`restaurant-actions report --notebooks DIR`: 2 tiny notebooks, the first one raises. The other completes, the
    exit code is 1, summary.json and the printed table name the failure. (The in-process version with `resume` is
    in nbs/23_experiments.ipynb.)"""
    import nbformat
    nbd = tmp_path/'nbs'; nbd.mkdir()
    cells = {'00_bad': "raise RuntimeError('boom')",
             '01_ok': "import pathlib\n(pathlib.Path(out_dir)/'metrics.json').write_text('{\"y\": 2}')"}
    for name, code in cells.items():
        params = nbformat.v4.new_code_cell("profile = 'smoke'\nout_dir = None"); params.metadata['tags'] = ['parameters']
        nbformat.write(nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(code)],
                       metadata={'kernelspec': {'name': 'python3', 'display_name': 'python3', 'language': 'python'}}),
                       nbd/f'{name}.ipynb')
    r = subprocess.run([str(EXE), 'report', '--profile', 'smoke', '--notebooks', str(nbd), '--out', str(tmp_path/'runs'), '-q'],
                       capture_output=True, text=True, timeout=TIMEOUT, env=dict(ENV, RESTAURANT_ACTIONS_RUNS=str(tmp_path/'r')))
    assert r.returncode == 1, r.stdout + r.stderr
    s = json.loads((tmp_path/'runs/summary.json').read_text())['experiments']
    assert {k: v['status'] for k, v in s.items()} == {'00_bad': 'failed', '01_ok': 'ok'}
    assert "RuntimeError: boom" in s['00_bad']['error'] and 'Traceback' not in r.stderr
    assert json.loads((tmp_path/'runs/01_ok/metrics.json').read_text()) == {'y': 2}
    lines = r.stdout.strip().splitlines()
    assert lines[-1] == f"1 ok, 1 failed; outputs in {tmp_path/'runs'}" and lines[0].split()[:2] == ['failed', '00_bad'], lines
    assert (tmp_path/'runs/00_bad/00_bad.ipynb').exists() and (tmp_path/'runs/report.html').exists()
    assert not (tmp_path/'r').exists()


def test_report_failure_line_names_the_cause(tmp_path, monkeypatch):
    "The first line of a failed experiment's `error` names the exception (papermill mocked: no kernel, instant)."
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError
    from restaurant_actions.experiments import run_report
    (tmp_path/'nbs').mkdir(); (tmp_path/'nbs/01_bad.ipynb').write_text('{}')
    def execute(*a, **kw):
        raise PapermillExecutionError(1, 3, "raise RuntimeError('boom')", 'RuntimeError', 'boom',
                                      ['Traceback (most recent call last)', "RuntimeError: boom"])
    monkeypatch.setattr(pm, 'execute_notebook', execute)
    s = run_report('smoke', out=tmp_path/'runs', notebooks=tmp_path/'nbs', html=False, progress=False)
    assert s['experiments']['01_bad']['status'] == 'failed'
    assert 'RuntimeError: boom' in s['experiments']['01_bad']['error'].splitlines()[0]
