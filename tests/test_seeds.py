"""Issue 22: seeds as an axis of the report. `make report PROFILE=smoke SEEDS=0,1` (the command line's
`report --seeds 0,1`) runs every training run once per seed into `runs/<profile>/seed-<n>/` (the dataset and the
pretraining once, shared by every seed, into `runs/<profile>/`), and the report reads
every seed: its tables carry the per-seed spread (mean, range, each run with its bootstrap interval) and its
findings say how many seeds agree.

Default run (about a minute on 2 free cores): two seeds of the frame baseline only (`--only 02 99`: 02 pretrains
its detector itself, with the pretraining's one seed), the report over both. Slow run: the whole smoke report with two seeds, through the installed
command as `make report` calls it. Smoke numbers are meaningless; what is checked is the report's shape. The judging
rule itself is tested on hand-made results in nbs/24d_findings.ipynb (agreeing seeds, a flip, one seed).
"""
import json, subprocess, sys
from pathlib import Path

import pytest
import torch
from helpers import tensors_differ
from test_reruns import ENV, SLOW

EXE = Path(sys.executable).parent/'restaurant-actions'
VERDICTS = ('reproduces', 'does not reproduce', 'no clear difference', 'not tested', 'note')


def check_two_seeds(runs: Path, experiments: list, shared: list = ()) -> dict:
    """The checks common to both runs on `runs/smoke` after a report with seeds 0 and 1 (`shared`: the experiments run
    once for both); the report's metrics."""
    s = json.loads((runs/'summary.json').read_text())
    assert s['seeds'] == [0, 1]
    assert {k: e['status'] for k, e in s['experiments'].items()} == {
        **{e: 'ok' for e in shared}, **{f'seed-{n}/{e}': 'ok' for n in (0, 1) for e in experiments}, '99_report': 'ok'}, s
    # each seed trained its own baseline: the seed is in its config, and the weights differ
    m0, m1 = (json.loads((runs/f'seed-{n}/02_yolo_baseline/yolo.metrics.json').read_text()) for n in (0, 1))
    assert (m0['config']['seed'], m1['config']['seed']) == (0, 1)
    c0, c1 = (torch.load(runs/f'seed-{n}/02_yolo_baseline/checkpoint_yolo.pt', weights_only=True)['model']
              for n in (0, 1))
    assert tensors_differ(c0, c1)
    cfg = json.loads((runs/'seed-1/02_yolo_baseline/config.json').read_text())
    assert cfg['params'] == {'seed': 1} and {'torch', 'threads', 'mkldnn', 'cpu'} <= set(cfg['machine'])
    # the report: one cell per table, mean and range over both seeds, next to each run's bootstrap interval
    r = json.loads((runs/'99_report/metrics.json').read_text())
    assert r['seeds'] == [0, 1]
    cell = r['table1']['frame YOLOv3']['Top 24 overall']
    assert '(range ' in cell and '2 of 2 seeds' in cell and cell.count(' [') == 2 and 'per seed: ' in cell, cell
    if '04_yowo_backbones' not in experiments: assert r['table1']['YOWO']['Top 24 overall'] == 'not run'
    assert all(f['seeds'] == 2 and (f['verdict'] in VERDICTS or f['verdict'].startswith('mixed ('))
               for f in r['findings'])
    assert (runs/'99_report/comparisons_per_seed.png').exists()
    assert 'Each verdict is judged on 2 seeds.' in (runs/'99_report/99_report.html').read_text()
    return r


def test_two_seeds_of_the_baseline(tmp_path, monkeypatch):
    from restaurant_actions.experiments import run_report
    for v, x in ENV.items():
        if v.endswith('_NUM_THREADS'): monkeypatch.setenv(v, x)
    monkeypatch.setenv('RESTAURANT_ACTIONS_RUNS', str(tmp_path))         # upstream runs are looked up there
    s = run_report('smoke', only=['02', '99'], seeds=[0, 1], timeout=600, progress=False)
    assert all(e['status'] == 'ok' for e in s['experiments'].values()), {n: e['error']
                                                                          for n, e in s['experiments'].items()}
    check_two_seeds(tmp_path/'smoke', ['02_yolo_baseline'])
    # without 01, each seed's 02 pretrained its detector itself: with the pretraining's seed, not its own
    p0, p1 = (torch.load(tmp_path/f'smoke/seed-{n}/02_yolo_baseline/checkpoint_yolo_pretrained.pt',
                         weights_only=True)['model'] for n in (0, 1))
    assert not tensors_differ(p0, p1)


@pytest.mark.skipif(not SLOW, reason='slow: the whole smoke report twice over (RESTAURANT_ACTIONS_TEST_FLAGS=slow)')
def test_smoke_report_with_two_seeds(tmp_path):
    "`make report PROFILE=smoke SEEDS=0,1`, as the Makefile runs it: every experiment per seed, findings over both."
    r = subprocess.run([str(EXE), 'report', '--profile', 'smoke', '--seeds', '0,1', '-q'], capture_output=True,
                       text=True, timeout=1800, env=dict(ENV, RESTAURANT_ACTIONS_RUNS=str(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    exps = ['02_yolo_baseline', '03_recurrent_yolo', '04_yowo_backbones', '05_yowo_anchors_freeze']
    rep = check_two_seeds(tmp_path/'smoke', exps, shared=['00_dataset', '01_pretrain'])
    # the pretraining ran once, and both seeds' baselines started from it
    inits = {json.loads((tmp_path/f'smoke/seed-{n}/02_yolo_baseline/yolo.metrics.json').read_text())['config']['init']
             for n in (0, 1)}
    assert inits == {str(tmp_path/'smoke/01_pretrain/checkpoint_yolo_pretrained.pt')}, inits
    assert not list(tmp_path.glob('smoke/seed-*/01_pretrain'))
    judged = [f for f in rep['findings'] if 'differences' in f['numbers']]
    assert judged and all(f"of 2 seeds agree in sign beyond the bootstrap half-width" in f['claim'] for f in judged)
    assert all(len(f['numbers']['differences']) == 2 for f in judged)
    assert rep['table1']['YOWO']['Top 24 overall'].count(' [') == 2
