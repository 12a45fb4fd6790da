"""End-to-end checks of the installed `restaurant-actions` command (real subprocesses)."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent/'restaurant-actions'


def run(*args, **kw):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, cwd=kw.pop('cwd', ROOT), **kw)


def test_help_lists_commands():
    r = run('--help')
    assert r.returncode == 0
    for c in ('synth', 'validate', 'convert', 'report'): assert c in r.stdout


def test_report_smoke_writes_dataset_chapter(tmp_path):
    r = run('report', '--profile', 'smoke', '--out', tmp_path/'runs', '--only', '00_dataset', '-q')
    assert r.returncode == 0, r.stdout + r.stderr
    d = tmp_path/'runs'/'00_dataset'                  # one for every seed: the data stay fixed (issue 22)
    for f in ('00_dataset.ipynb', '00_dataset.html', 'config.json', 'metrics.json', 'class_distribution.png', 'samples.png'):
        assert (d/f).exists(), f
    m = json.loads((d/'metrics.json').read_text())
    assert m['num_classes'] == 45 and m['num_clips'] > 0 and 0 < m['idle_fraction'] < 1
    s = json.loads((tmp_path/'runs'/'summary.json').read_text())
    assert s['experiments']['00_dataset']['status'] == 'ok'
    assert (tmp_path/'runs'/'report.html').read_text().count('00_dataset') >= 1


def test_validate_bad_native_exit_2_no_traceback(tmp_path):
    ds = tmp_path/'ds'; (ds/'videos').mkdir(parents=True)
    (ds/'classes.txt').write_text('a\nb\n')
    (ds/'annotations.json').write_text(json.dumps({'schema_version': 1,
        'videos': [{'id': 'v', 'file': 'videos/v.mp4', 'fps': 30, 'width': 64, 'height': 48, 'num_frames': 10}],
        'tubes': [{'id': 0, 'video': 'v', 'class_id': 5, 'frames': [3, 2], 'boxes': [[0, 0, 10, 10], [0, 0, 70, 10]]}]}))
    r = run('validate', ds)
    assert r.returncode == 2
    assert 'Traceback' not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == '4 problems found', r.stderr
    assert f'{ds}/annotations.json:$.tubes[0].class_id: unknown class id 5' in r.stderr
    assert f'{ds}/annotations.json:$.tubes[0].boxes[1]: box [0.0, 0.0, 70.0, 10.0] is outside the 64x48 frame' in r.stderr


def test_convert_failure_leaves_nothing(tmp_path):
    bad = tmp_path/'bad.xml'
    bad.write_text('<annotations>\n<version>1.1</version>\n<track id="0" label="x">\n')   # truncated CVAT XML
    r = run('convert', bad, tmp_path/'out', '--from', 'cvat', '--to', 'native')
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert str(bad) in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.xml']
