"""The architecture refactor (issue 21) changes no result: the smoke report of the commit before it and of this tree give
the same checkpoints (tensor by tensor, bit for bit) and the same metrics files (slow; about 3 minutes on 2 cores).

`BEFORE` is the last commit before the refactor. Its tree is checked out with `git worktree` and imported through
`PYTHONPATH`; both reports write their data and runs into their own temporary folders. Compared: every `.json` and
`.pt` file both wrote (the report page `99_report` renders differently on purpose and is left out), after
`test_reruns.clean` (wall-clock fields) and these normalisations, each a rename, not a change of value:

- the temporary folders of the two runs are written `<root>`, and `/seed-0/` in a path is `/`;
- the training config's `every` and the profile's `clip_rate`/`seq_every` are now `frame_step`/`seq_frame_step` (one
  name for the frame spacing, issue 21);
- a training-config field added since (`lr_mult`, issue 23) at its default `None` is left out, and so are the runs
  added since (issue 23's `recurrent_motion`: its files and its entries in 03's metrics);
- a NaN and a JSON `null` are the same missing number (the JSON writer now writes NaN as `null`);
- issue 22: every seed's runs are in `seed-<n>/` (the after-tree's `seed-0/` is mapped away: its files must be the
  before-tree's, one for one), and an experiment's `config.json` records the machine (`machine`, absent before); the
  dataset and the pretraining, which every seed shares, take no `seed` parameter (their runs still use seed 0), and
  the quick profile's description gives its measured time per seed.
"""
import json, math, os, shutil, subprocess, sys
from pathlib import Path

import pytest
import torch
from helpers import tensors_differ
from test_reruns import ENV, SLOW, clean

ROOT = Path(__file__).resolve().parents[1]
BEFORE = 'a848c73'          # the last commit before issue 21's refactor (and the report it gave)
RENAMED = dict(every='frame_step', clip_rate='frame_step', seq_every='seq_frame_step')
ADDED = {'lr_mult'}          # TrainConfig fields added since, at their default None (issue 23)
NEW_RUNS = {'recurrent_motion'}     # runs added since (issue 23): not in the before-tree's report


def norm(x, roots):
    "`x` with the temporary roots written `<root>`, renamed config keys, NaN as None, fields added since at None left out."
    if isinstance(x, dict):
        return {RENAMED.get(k, k): norm(v, roots) for k, v in x.items()
                if not (k in ADDED and v is None) and k not in NEW_RUNS}
    if isinstance(x, (list, tuple)): return [norm(v, roots) for v in x]
    if isinstance(x, float) and math.isnan(x): return None
    if isinstance(x, str):
        for r in roots: x = x.replace(r, '<root>')
        return x.replace('/seed-0/', '/')            # issue 22: the after-tree's paths (out_dir, init) in seed-0/
    return x


def smoke_report(src: Path, where: Path) -> Path:
    "Run the smoke report of the tree `src` with its own data and runs folders under `where`; the runs folder."
    env = dict(os.environ, **ENV, PYTHONPATH=str(src), RESTAURANT_ACTIONS_RUNS=str(where/'runs'),
               RESTAURANT_ACTIONS_DATA=str(where/'data'))
    code = (f"from restaurant_actions.experiments import run_report\n"
            f"s = run_report('smoke', notebooks={str(src/'nbs'/'experiments')!r}, parameters=dict(seed=0), progress=False)\n"
            "print({n: e['status'] for n, e in s['experiments'].items()})")
    r = subprocess.run([sys.executable, '-c', code], cwd=src, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    return where/'runs'/'smoke'


def files(d: Path) -> dict:
    "`{path as compared: file}` of a smoke report's `.json`/`.pt` files, 99_report left out, `seed-0/` mapped away."
    out = {}
    for p in d.rglob('*'):
        rel = p.relative_to(d)
        if (p.suffix not in ('.json', '.pt') or p.name.startswith('.') or p.name == 'summary.json'
                or rel.parts[0] == '99_report' or any(n in p.name for n in NEW_RUNS)):
            continue
        key = Path(*rel.parts[1:]) if rel.parts[0] == 'seed-0' else rel
        assert key not in out, f'{rel}: twice, with and without seed-0/'
        out[key] = p
    return out


def differences(a: Path, b: Path, roots) -> dict:
    "`{file: what differs}` over the `.json`/`.pt` files of two smoke reports, 99_report left out."
    fa, fb = files(a), files(b)
    assert sorted(fa) == sorted(fb), f'different files: {sorted(set(map(str, fa)) ^ set(map(str, fb)))}'
    out = {}
    for f in sorted(fa):
        load = ((lambda p: json.loads(p.read_text())) if f.suffix == '.json'
                else (lambda p: torch.load(p, map_location='cpu', weights_only=True)))
        x, y = (norm(clean(load(d[f]), '\0'), roots) for d in (fa, fb))     # tensors pass through unchanged
        if f.name == 'config.json':
            for c in (x, y):
                c.pop('machine', None); c.get('params', {}).pop('seed', None); c.get('profile', {}).pop('description', None)
        d = tensors_differ(x, y)
        if d: out[str(f)] = d
    return out


@pytest.mark.skipif(not SLOW, reason='slow: two smoke reports (RESTAURANT_ACTIONS_TEST_FLAGS=slow)')
def test_refactor_changes_no_result(tmp_path):
    if shutil.which('git') is None or subprocess.run(['git', 'cat-file', '-e', f'{BEFORE}^{{commit}}'], cwd=ROOT).returncode:
        pytest.skip(f'commit {BEFORE} is not in this clone (a shallow clone?)')
    before = tmp_path/'before-tree'
    subprocess.run(['git', 'worktree', 'add', '--detach', str(before), BEFORE], cwd=ROOT, check=True, capture_output=True)
    try:
        runs = [smoke_report(before, tmp_path/'a'), smoke_report(ROOT, tmp_path/'b')]
    finally:
        subprocess.run(['git', 'worktree', 'remove', '--force', str(before)], cwd=ROOT, capture_output=True)
    diff = differences(*runs, roots=[str(tmp_path/'a'), str(tmp_path/'b')])
    assert diff == {}, diff


def test_differences_sees_a_changed_bit_and_not_a_rename(tmp_path):
    "The comparison itself: a renamed config key, a NaN written as null and the roots are equal; one flipped bit is not."
    w = torch.arange(6, dtype=torch.float32)
    for side, every_key, val, nan in (('a', 'every', 0.5, float('nan')), ('b', 'frame_step', 0.5, None)):
        d = tmp_path/side/'runs'/'smoke'/'02_x'; d.mkdir(parents=True)
        torch.save({'model': {'w': w.clone()}, 'config': {every_key: 2, 'init': str(tmp_path/side/'runs'/'m.pt')}}, d/'m.pt')
        (d/'m.metrics.json').write_text(json.dumps({'mAP': val, 'top5': nan, 'config': {every_key: 2}}))
    roots = [str(tmp_path/'a'), str(tmp_path/'b')]
    a, b = tmp_path/'a'/'runs'/'smoke', tmp_path/'b'/'runs'/'smoke'
    assert differences(a, b, roots) == {}
    (b/'seed-0').mkdir(); shutil.move(b/'02_x', b/'seed-0'/'02_x')     # the after-tree's layout: seed-0/ is mapped away
    for d, extra in ((a, {}), (b/'seed-0', {'machine': {'threads': 2}})):
        (d/'02_x'/'config.json').write_text(json.dumps({'params': {'seed': 0}, **extra}))
    assert differences(a, b, roots) == {}
    (b/'seed-0/02_x/recurrent_motion.metrics.json').write_text('{"mAP": 0.9}')       # a run added since: left out
    (b/'seed-0/02_x/m.metrics.json').write_text(json.dumps({'mAP': 0.5, 'top5': None, 'config': {'frame_step': 2},
                                                            'recurrent_motion': {'mAP': 0.9}}))
    assert differences(a, b, roots) == {}
    w2 = w.clone(); w2.view(torch.int32)[3] ^= 1                    # one bit of one weight
    torch.save({'model': {'w': w2}, 'config': {'frame_step': 2, 'init': str(tmp_path/'b'/'runs'/'m.pt')}},
               b/'seed-0/02_x/m.pt')
    (b/'seed-0/02_x/m.metrics.json').write_text(json.dumps({'mAP': 0.5000001, 'top5': None,
                                                            'config': {'frame_step': 2}}))
    assert differences(a, b, roots) == {'02_x/m.pt': ['.model.w'], '02_x/m.metrics.json': ['.mAP']}
