"""`validate` and `convert` end to end on hand-written files in each real format (the installed command)."""
import contextlib, io, json, subprocess, sys
from pathlib import Path

import cv2
import numpy as np

EXE = Path(sys.executable).parent/'restaurant-actions'

CVAT = '''<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta>
    <task>
      <id>3</id>
      <name>cam1</name>
      <size>10</size>
      <mode>interpolation</mode>
      <start_frame>0</start_frame>
      <stop_frame>9</stop_frame>
      <labels>
        <label><name>Operating POS</name><attributes></attributes></label>
      </labels>
      <original_size><width>64</width><height>48</height></original_size>
      <source>cam1.mp4</source>
    </task>
  </meta>
  <track id="0" label="Operating POS" source="manual">
    <box frame="2" keyframe="1" outside="0" occluded="0" xtl="10.00" ytl="10.00" xbr="30.00" ybr="40.00" z_order="0"></box>
    <box frame="4" keyframe="1" outside="0" occluded="0" xtl="14.00" ytl="10.00" xbr="34.00" ybr="40.00" z_order="0"></box>
    <box frame="5" keyframe="1" outside="1" occluded="0" xtl="14.00" ytl="10.00" xbr="34.00" ybr="40.00" z_order="0"></box>
  </track>
</annotations>
'''


def run(*args):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True)


def run_here(*args):
    "`(exit code, stderr)` of the command line run in this process (a traceback would fail the test)."
    from restaurant_actions.cli import main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()): code = main([str(a) for a in args])
    return code, err.getvalue()


def write_video(path, n=10, size=(64, 48), fps=12.0):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), fps, size)
    for k in range(n): vw.write(np.full((size[1], size[0], 3), 20 * k, np.uint8))
    vw.release()


def test_cvat_validate_convert(tmp_path):
    (tmp_path/'cam1.xml').write_text(CVAT.replace('cam1.mp4', 'cam1.avi')); write_video(tmp_path/'cam1.avi')
    r = run('validate', tmp_path/'cam1.xml')
    assert r.returncode == 0 and r.stdout.startswith(f'OK {tmp_path}/cam1.xml (cvat): 1 video, 1 tube, 1 class'), r.stdout + r.stderr
    r = run('convert', tmp_path/'cam1.xml', tmp_path/'native', '-o', 'fps=25')
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path/'native/annotations.json').read_text())
    assert doc['tubes'][0]['frames'] == [2, 3, 4]                              # keyframes interpolated, closed at 5
    assert doc['tubes'][0]['boxes'][1] == [12.0, 10.0, 32.0, 40.0]
    assert doc['videos'][0]['fps'] == 25.0
    assert json.loads((tmp_path/'native/annotations.json').read_text())['videos'][0]['file'] == 'videos/cam1.avi'
    bad = CVAT.replace('xbr="34.00" ybr="40.00" z_order="0"></box>\n    <box frame="5"', 'xbr="x" ybr="40.00" z_order="0"></box>\n    <box frame="5"')
    bad = bad.replace('</annotations>', '  <track id="1" label="Dancing" source="manual">\n'
                      '    <box frame="1" keyframe="1" outside="0" occluded="0" xtl="1.00" ytl="1.00" xbr="9.00" ybr="9.00" z_order="0"></box>\n'
                      '  </track>\n</annotations>')
    (tmp_path/'bad.xml').write_text(bad)
    r = run('validate', tmp_path/'bad.xml')
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[-1] == f'{len(lines) - 1} problems found' and len(lines) >= 3, r.stderr
    assert all(l.startswith(f'{tmp_path}/bad.xml:') for l in lines[:-1]), lines
    assert any(':24:' in l and "unknown label 'Dancing'" in l for l in lines) and any(":21: xbr is not a number: 'x'" in l for l in lines), lines


def test_yowo_layout_validate_convert(tmp_path):
    root = tmp_path/'ucf'
    for k in range(1, 7):
        p = root/f'rgb-images/Cooking/v_cook_01/{k:05d}.jpg'; p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), np.full((48, 64, 3), 20 * k, np.uint8))
    lab = root/'labels/Cooking/v_cook_01'; lab.mkdir(parents=True)
    for k in (2, 3, 4): (lab/f'{k:05d}.txt').write_text(f'1 {8 + k} 10 {30 + k} 40\n')
    (root/'trainlist.txt').write_text('Cooking/v_cook_01/00002.txt\nCooking/v_cook_01/00003.txt\n')
    (root/'testlist.txt').write_text('Cooking/v_cook_01/00004.txt\n')
    r = run('validate', root)
    assert r.returncode == 0 and '(yowo): 1 video, 1 tube, 1 class' in r.stdout, r.stdout + r.stderr
    r = run('convert', root, tmp_path/'native')
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path/'native/annotations.json').read_text())
    assert doc['tubes'][0]['frames'] == [1, 2, 3] and doc['tubes'][0]['boxes'][0] == [10.0, 10.0, 32.0, 40.0]
    assert (tmp_path/'native/classes.txt').read_text() == 'Cooking\n'
    assert len(list((tmp_path/'native/videos/v_cook_01').iterdir())) == 6       # frames linked, not re-encoded
    (lab/'00003.txt').write_text('0 10 10 30 40\n1 10 10 99 40\n1 a b c d e\n')
    r = run('validate', root)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == '3 problems found', r.stderr
    assert all(l.startswith(f'{lab}/00003.txt:') for l in r.stderr.strip().splitlines()[:-1]), r.stderr


def test_ava_validate(tmp_path):
    (tmp_path/'ava.csv').write_text('vidA,0902,0.125,0.250,0.500,0.750,2,1\nvidA,0903,0.250,0.250,0.625,0.750,2,1\n')
    (tmp_path/'labels.pbtxt').write_text('item {\n  name: "bend/bow (at the waist)"\n  id: 1\n}\nitem {\n  name: "crouch/kneel"\n  id: 2\n}\n')
    r = run('validate', tmp_path/'ava.csv', '-o', 'start_second=900', '-o', 'video_sizes={"vidA": [64, 48]}')
    assert r.returncode == 2 and f"ava.csv: video 'vidA': video not found: {tmp_path}/vidA" in r.stderr, r.stderr   # no media
    r = run('validate', tmp_path/'ava.csv', '--no-check-files', '-o', 'start_second=900', '-o', 'video_sizes={"vidA": [64, 48]}')
    assert r.returncode == 0 and '(ava): 1 video, 1 tube, 2 classes' in r.stdout, r.stdout + r.stderr
    (tmp_path/'ava.csv').write_text('vidA,0902,0.125,0.250,1.500,0.750,7,1\n')
    r = run('validate', tmp_path/'ava.csv', '-o', 'start_second=900', '-o', 'video_sizes={"vidA": [64, 48]}')
    assert r.returncode == 2 and all(l.startswith(f'{tmp_path}/ava.csv:1:') for l in r.stderr.strip().splitlines()[:-1]), r.stderr


def test_reader_options_one_check(tmp_path):
    """`-o` options pass one check in validate and convert: a clear line and exit 2, never a traceback (issue 19)."""
    (tmp_path/'cam1.xml').write_text(CVAT.replace('cam1.mp4', 'cam1.avi')); write_video(tmp_path/'cam1.avi')
    for opt, msg in [('foo=1', 'option foo: not an option here (options: '),
                     ('fps=-1', 'option fps: must be a frame rate > 0 and <= 1000 (got -1)'),
                     ('fps=abc', "option fps: must be a frame rate > 0 and <= 1000 (got 'abc')"),
                     ('clip=2', 'option clip: must be true or false (got 2)'),
                     (f'media_dir={tmp_path}/nope', 'option media_dir: must be an existing folder'),
                     ('classes=[]', 'option classes: must be a non-empty list of class names (got [])'),
                     ('noequals', "-o 'noequals': must look like KEY=VALUE")]:
        for cmd in (['validate', tmp_path/'cam1.xml'], ['convert', tmp_path/'cam1.xml', tmp_path/'out']):
            code, err = run_here(*cmd, '-o', opt)                             # in-process: no second of imports per case
            assert code == 2 and msg in err and len(err.strip().splitlines()) == 1, (cmd, opt, err)
    assert not (tmp_path/'out').exists()


def test_convert_writes_what_validate_accepts(tmp_path):
    """Missing videos and duplicate class names: convert refuses with validate's message, or --annotations-only (issue 19)."""
    (tmp_path/'cam1.xml').write_text(CVAT)                                    # cam1.mp4 is not there
    v, c = run('validate', tmp_path/'cam1.xml'), run('convert', tmp_path/'cam1.xml', tmp_path/'out')
    line = f"{tmp_path}/cam1.xml:5: video 'cam1': video not found: {tmp_path}/cam1.mp4"   # the file and line of its <task>
    assert v.returncode == c.returncode == 2 and line in v.stderr and line in c.stderr, (v.stderr, c.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ['cam1.xml']        # nothing written
    c = run('convert', tmp_path/'cam1.xml', tmp_path/'out', '--annotations-only')
    assert c.returncode == 0, c.stderr
    v = run('validate', tmp_path/'out')
    assert v.returncode == 0 and 'note: annotations only' in v.stdout, v.stdout + v.stderr
    (tmp_path/'ava.csv').write_text('vidA,0902,0.125,0.250,0.500,0.750,2,1\n')
    (tmp_path/'labels.pbtxt').write_text('item {\n  name: "crouch/kneel"\n  id: 1\n}\nitem {\n  name: "crouch/kneel"\n  id: 2\n}\n')
    args = ['-o', 'start_second=900', '-o', 'video_sizes={"vidA": [64, 48]}']
    v = run('validate', tmp_path/'ava.csv', '--no-check-files', *args)
    c = run('convert', tmp_path/'ava.csv', tmp_path/'ava_out', '--annotations-only', *args)
    assert v.returncode == c.returncode == 2 and "duplicate class name 'crouch/kneel'" in v.stderr and v.stderr == c.stderr, (v.stderr, c.stderr)
    assert not (tmp_path/'ava_out').exists()


def test_cvat_notice(tmp_path):
    """Skipped shapes are reported in one note; the box tracks load (issue 19)."""
    skel = CVAT.replace('</annotations>', '  <track id="1" label="person" source="manual">\n    <skeleton frame="2" keyframe="1" z_order="0">\n'
                        '      <points label="head" keyframe="1" outside="0" occluded="0" points="1.00,2.00">\n      </points>\n'
                        '    </skeleton>\n  </track>\n</annotations>')
    skel = skel.replace('<label><name>Operating POS</name><attributes></attributes></label>',
                        '<label><name>Operating POS</name><attributes></attributes></label>\n        <label><name>person</name><type>skeleton</type></label>\n'
                        '        <label><name>head</name><type>points</type><parent>person</parent></label>')
    (tmp_path/'cam1.xml').write_text(skel)
    r = run('validate', tmp_path/'cam1.xml', '--no-check-files')
    assert r.returncode == 0 and '1 video, 1 tube, 1 class' in r.stdout, r.stdout + r.stderr
    assert f'note: {tmp_path}/cam1.xml: skipped 1 <skeleton> track (person); labels person, head (not box labels)' in r.stdout, r.stdout
