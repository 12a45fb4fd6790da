"""Reliability battery, part 6: reruns give the same results (issue 11; table in tests/README.md).

Default run: `nbs/experiments/02_yolo_baseline.ipynb` executed three times with papermill (profile smoke, seeds 0, 0
and 1, each into its own folder; the three run concurrently, one thread each). Slow run: the whole smoke report
(`run_report`, every notebook of `nbs/experiments/`) twice, each with its own `RESTAURANT_ACTIONS_RUNS`.

Compared: every JSON file an experiment writes (`config.json`, `metrics.json`, `<variant>.metrics.json`,
`<variant>.summary.json`, the batch's `summary.json`) exactly, and every checkpoint (`*.pt`) tensor by tensor, bit for
bit — except the fields in `IGNORED`, which measure the wall clock or name the output folder:

- `train_seconds`, `samples_per_s` (also per step in a checkpoint's `history`), a batch summary's `seconds`: time
  measurements; they change with the machine's load from one run to the next by nature;
- the output folder itself: each run writes to its own temporary folder, so that path is replaced by `<out>` wherever
  it appears (`out_dir` in `config.json` and in the batch summary's `parameters`; in the whole report also the `init`
  of a training config, the upstream experiment's checkpoint, in metrics and checkpoints).

Figures (`*.png`) are compared byte for byte as well. The datasets and frame caches are the shared ones of
`data/generated/` (as for the notebook tests); experiment outputs go to temporary folders only.
"""
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from helpers import tensors_differ

ROOT = Path(__file__).resolve().parents[1]
SLOW = 'slow' in os.environ.get('RESTAURANT_ACTIONS_TEST_FLAGS', '').split()
PAPERMILL = Path(sys.executable).parent/'papermill'
IGNORED = {'train_seconds', 'samples_per_s', 'seconds'}
ENV = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', OPENBLAS_NUM_THREADS='1')


def clean(x, out: str):
    "`x` without the wall-clock fields, its output folder written as `<out>`."
    if isinstance(x, dict): return {k: clean(v, out) for k, v in x.items() if k not in IGNORED}
    if isinstance(x, (list, tuple)): return type(x)(clean(v, out) for v in x)
    if isinstance(x, str): return x.replace(out, '<out>')
    return x


def json_differ(a, b, where='') -> list:
    "Paths where two cleaned JSON values differ."
    if isinstance(a, dict) and isinstance(b, dict):
        return ([f'{where}.{k}' for k in set(a) ^ set(b)] +
                [d for k in a if k in b for d in json_differ(a[k], b[k], f'{where}.{k}')])
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_differ(x, y, f'{where}[{i}]')]
    return [] if a == b or (a != a and b != b) else [where]


def compare_runs(a: Path, b: Path) -> dict:
    "`{relative file: [differing fields]}` between two output folders (same files expected in both)."
    files = lambda d: sorted(p.relative_to(d) for p in d.rglob('*') if p.suffix in ('.json', '.pt', '.png') and not p.name.startswith('.'))
    fa, fb = files(a), files(b)
    assert fa == fb, f'different files: {sorted(set(map(str, fa)) ^ set(map(str, fb)))}'
    out = {}
    for f in fa:
        if f.suffix == '.json':
            d = json_differ(clean(json.loads((a/f).read_text()), str(a)), clean(json.loads((b/f).read_text()), str(b)))
        elif f.suffix == '.pt':
            d = tensors_differ(clean(torch.load(a/f, weights_only=True), str(a)), clean(torch.load(b/f, weights_only=True), str(b)))
        else: d = [] if (a/f).read_bytes() == (b/f).read_bytes() else ['bytes']
        if d: out[str(f)] = d
    return out


def papermill(nb: Path, out: Path, seed: int):
    out.mkdir(parents=True)
    r = subprocess.run([str(PAPERMILL), '--no-progress-bar', '-k', 'python3', str(nb), str(out/f'{nb.stem}.ipynb'),
                        '-p', 'profile', 'smoke', '-p', 'out_dir', str(out), '-p', 'seed', str(seed)],
                       capture_output=True, text=True, timeout=600, cwd=nb.parent,
                       env=dict(ENV, RESTAURANT_ACTIONS_RUNS=str(out.parent/'runs')))
    assert r.returncode == 0, r.stderr[-3000:]


def test_yolo_baseline_rerun_is_identical(tmp_path):
    """02_yolo_baseline (smoke) with seed 0 twice: identical files apart from `IGNORED`; with seed 1: different
    losses, anchors and weights."""
    nb = ROOT/'nbs/experiments/02_yolo_baseline.ipynb'
    runs = {'a': 0, 'b': 0, 'c': 1}
    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda k: papermill(nb, tmp_path/k, runs[k]), runs))
    assert compare_runs(tmp_path/'a', tmp_path/'b') == {}
    m = json.loads((tmp_path/'a/yolo.metrics.json').read_text())
    assert m['steps'] == 3 and m['skipped'] == 0 and len(m['history']) == 3
    diff = compare_runs(tmp_path/'a', tmp_path/'c')
    print(json.dumps(diff)[:2000])
    assert {'.config.seed', '.history[0][1]', '.first_loss', '.last_loss'} <= set(diff['yolo.metrics.json'])
    assert diff['checkpoint_yolo.pt'] and '.params.seed' in diff['config.json']
    assert not (tmp_path/'runs').exists() or not any((tmp_path/'runs').rglob('*.json'))   # nothing written elsewhere


@pytest.mark.skipif(not SLOW, reason='slow: set RESTAURANT_ACTIONS_TEST_FLAGS=slow')
def test_smoke_report_rerun_is_identical(tmp_path, monkeypatch):
    "The whole smoke report twice (every experiment notebook, seed 0): identical files apart from `IGNORED`."
    from restaurant_actions.experiments import run_report
    for v, x in ENV.items():
        if v.endswith('_NUM_THREADS'): monkeypatch.setenv(v, x)
    outs = []
    for k in ('a', 'b'):
        monkeypatch.setenv('RESTAURANT_ACTIONS_RUNS', str(tmp_path/k))    # upstream runs are looked up there
        s = run_report('smoke', parameters=dict(seed=0), timeout=600, progress=False)
        assert all(e['status'] == 'ok' for e in s['experiments'].values()), {n: e['error'] for n, e in s['experiments'].items()}
        outs.append(tmp_path/k/'smoke')
    diff = compare_runs(*outs)
    assert diff == {}, diff
