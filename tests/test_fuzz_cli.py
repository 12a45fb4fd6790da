"""Reliability battery, part 7: the command line fuzzed (issue 20).

hypothesis drives every subcommand's parser and entry point in-process (`cli.main`) with generated option values —
numbers at and beyond their bounds, empty, huge, negative, not numbers; paths that are missing, files, folders, the
input itself, its parent, a folder of someone else's files — and checks the only outcomes: success (exit 0), or exit 2
with one line `<where>: <what>` (a reader's problems: one line each and their count). Never a traceback (an exception
escaping `main` fails the case); never a change to a file outside the command's destination; no debris when it fails.
Commands that do real work (train, detect, eval of a checkpoint, report) always get at least one bad value, so each
case stays cheap; their successful paths are tested elsewhere.
"""
import contextlib, io, json, os, re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from restaurant_actions.cli import main

SLOW = 'slow' in os.environ.get('RESTAURANT_ACTIONS_TEST_FLAGS', '').split()
CASES = int(os.environ.get("FUZZ_CLI_CASES", 2000 if SLOW else 300))
NUMBERS = ['-1', '0', '-0', '1', '2', '0.5', '1e12', '1e309', 'nan', 'inf', '-inf', 'abc', '', '0x10', '1_000', '2147483648',
           '\u0663', '-5', '64', '1.5', '99999999999999999999']
SIZES = ['0x0', '33x33', '-64x64', '64x64', '32x32', '8x8', '100000x100000', 'x', '64', '64x64x3', 'axb', '128x96']
PATHS = ['MISSING', 'FILE', 'FOLDER', 'DS', 'PARENT', 'FOREIGN', 'OURS', 'CKPT', 'CVAT']

# subcommand: (positional kinds, {option: values}, options that are destinations, does real work when all values are good)
SPEC = {
    'synth': ([], {'--out': ['DEST', 'FOREIGN', 'FILE', 'PARENT', 'CKPT'],     # (replacing our own output: test_cli_boundary) '--minutes': NUMBERS + ['0.01'] * 6,
                   '--fps': NUMBERS + ['10'] * 4, '--size': SIZES, '--views': NUMBERS, '--classes': NUMBERS, '--seed': NUMBERS,
                   '--lookalikes': NUMBERS, '--label-noise': NUMBERS, '--workers': NUMBERS, '--segment-minutes': NUMBERS,
                   '--idle': NUMBERS, '--jitter': NUMBERS, '--difficulty': ['easy', 'hard', 'nope'], '--overwrite': [None]},
              {'--out'}, False),
    'validate': (['PATH'], {'--format': ['native', 'cvat', 'yowo', 'ava', 'xml'], '-o': ['fps=25', 'fps=-1', 'bogus=1', 'x', 'fps=',
                                                                                          'media_dir=MISSING', 'classes=[]']},
                 set(), False),
    'convert': (['PATH', 'DESTPATH'], {'--to': ['native', 'cvat', 'yowo', 'ava', 'nope'], '--overwrite': [None],
                                       '--annotations-only': [None], '-o': ['fps=25', 'bogus=1', 'fill_gap=-1', 'media=none']},
                {'DESTPATH'}, False),
    'anchors': (['PATH'], {'-k': NUMBERS, '--kind': ['yowo', 'yolov3', 'x'], '--input-size': SIZES, '--seed': NUMBERS,
                           '--json': ['DESTFILE', 'FOLDER', 'FILE']}, {'--json'}, False),
    'models': ([], {'--size': SIZES, '--T': NUMBERS, '--classes': NUMBERS, '--family': ['frame', 'clip', 'x'],
                    '--only': ['yolov3_tiny', 'nosuchmodel'], '--json': ['DESTFILE', 'FOLDER']}, {'--json'}, True),
    'eval': (['CKPT'], {'--data': PATHS, '--part': ['test', 'train', 'x'], '--size': SIZES, '--every': NUMBERS,
                        '--json': ['DESTFILE', 'FOLDER']}, {'--json'}, True),
    'train': (['PROFILE'], {'--role': ['frame', 'yowo', 'x'], '--backbone': ['resnet18', 'nosuch'], '--data': PATHS,
                            '--top-k': NUMBERS, '--seed': NUMBERS, '--name': ['a', '../x', '', 'a/b'],
                            '--set': ['lr=-1', 'steps=0', 'bogus=1', 'steps=abc', 'lr'], '--out': ['DEST']}, {'--out'}, True),
    'detect': (['SOURCE'], {'--weights': PATHS, '--out': ['DEST', 'FOREIGN', 'DS'], '--stride': NUMBERS, '--batch': NUMBERS,
                            '--conf': NUMBERS, '--size': SIZES, '--T': NUMBERS, '--device': ['cpu', 'bogus', 'cuda:7', ''],
                            '--max-frames': NUMBERS, '--max-det': NUMBERS, '--cvat': ['DESTFILE', 'FOLDER']},
               {'--out', '--cvat'}, True),
    'report': ([], {'--profile': ['smoke', 'quick', 'nope'], '--only': ['zz', '00'], '--timeout': NUMBERS, '-p': ['seed=1', 'lr=1', 'x'],
                    '--notebooks': ['MISSING', 'FILE', 'FOLDER'], '--out': ['DEST']}, {'--out'}, True),
}
BAD = {   # for the commands that do real work: one of these, surely refused up front, is added to every case
    'models': {'--size': ['0x0', '33x33', '-64x64', 'x'], '--T': ['0', '-1', 'abc'], '--classes': ['0', '-5', 'nan'], '--only': ['nosuchmodel']},
    'eval': {'--every': ['0', '-1', 'abc'], '--part': ['x'], '--size': ['0x0', '33x33']},
    'train': {'--top-k': ['0', '-1', 'abc'], '--set': ['lr=-1', 'steps=0', 'bogus=1'], '--name': ['../x', '', 'a/b'], '--role': ['x']},
    'detect': {'--conf': ['2', '-1', 'nan'], '--stride': ['0', '-1'], '--batch': ['0'], '--T': ['0'], '--max-frames': ['-5', '0'],
               '--device': ['bogus', 'cuda:7'], '--size': ['0x0', '33x33']},
    'report': {'--profile': ['nope'], '--only': ['zz'], '--timeout': ['0', '-1'], '-p': ['lr=1', 'x'], '--notebooks': ['MISSING', 'FILE']}}
COUNTS = {}


def run(argv, cwd):
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd(); os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try: code = main(argv)
            except SystemExit as e: code = e.code
    finally: os.chdir(old)
    return code, err.getvalue()


def snapshot(root: Path, skip: set) -> dict:
    return {p.relative_to(root).as_posix(): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in root.rglob('*') if not any(p == s or s in p.parents for s in skip) and not p.name.startswith('.cache')}


@pytest.fixture(scope='module')
def sandbox(tmp_path_factory):
    d = tmp_path_factory.mktemp('fuzzcli')
    box = d/'box'; box.mkdir()
    assert run(['synth', '--out', str(box/'ds'), '--minutes', '0.1', '--fps', '10', '--size', '96x64', '--views', '1',
                '--classes', '6', '-q'], d)[0] == 0
    assert run(['convert', str(box/'ds'), str(box/'ours')], d)[0] == 0
    assert run(['convert', str(box/'ds'), str(box/'cvat'), '--to', 'cvat'], d)[0] == 0
    from restaurant_actions.models.registry import build_model, save_checkpoint
    save_checkpoint(box/'tiny.pt', build_model('yolov3_tiny', num_classes=45, width=0.125))
    (box/'foreign').mkdir(); (box/'foreign/notes.txt').write_text('not ours'); (box/'file.txt').write_text('a file')
    (box/'folder').mkdir()
    return d, box


def resolve(kind: str, box: Path, dest: Path) -> str:
    return str(dict(MISSING=box/'missing', FILE=box/'file.txt', FOLDER=box/'folder', DS=box/'ds', PARENT=box, FOREIGN=box/'foreign',
                    OURS=box/'ours', CKPT=box/'tiny.pt', CVAT=box/'cvat', DEST=dest/'out', DESTPATH=dest/'out',
                    DESTFILE=dest/'out.json', PATH=box/'ds', SOURCE=box/'ds/videos/s00_c0.mp4', PROFILE='smoke').get(kind, kind))


@st.composite
def command(draw):
    name = draw(st.sampled_from(sorted(SPEC)))
    pos, opts, dests, costly = SPEC[name]
    chosen = draw(st.lists(st.sampled_from(sorted(opts)), max_size=4, unique=True))
    values = {o: draw(st.sampled_from(opts[o])) for o in chosen}
    positional = [draw(st.sampled_from(PATHS + ['PATH'])) if p == 'PATH' else p for p in pos]
    if costly:
        bad = draw(st.sampled_from(sorted(BAD[name])))
        values[bad] = draw(st.sampled_from(BAD[name][bad]))
    return name, positional, values, dests


@settings(max_examples=CASES, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(cmd=command())
def test_fuzz_cli(sandbox, cmd):
    d, box = sandbox
    name, positional, values, dests = cmd
    case = d/'case'
    if case.exists():
        import shutil; shutil.rmtree(case)
    case.mkdir()
    argv = [name] + [resolve(p, box, case) for p in positional]
    for o, v in values.items():
        argv += [o] if v is None else [o, resolve(v, box, case)]
    if name in ('synth', 'train', 'detect', 'report') and '--out' not in values: argv += ['--out', str(case/'out')]
    if name in ('synth', 'train', 'detect', 'eval', 'report'): argv.append('-q')
    before = snapshot(box, set())
    code, err = run(argv, case)
    lines = err.strip().splitlines()
    assert code in (0, 2), (argv, code, err)
    assert 'Traceback' not in err, (argv, err)
    if code == 2:
        if lines and re.fullmatch(r'\d+ problems? found', lines[-1]):
            assert len(lines) == int(lines[-1].split()[0]) + 1 and all(': ' in l for l in lines[:-1]), (argv, err)
        else: assert len(lines) == 1 and ': ' in lines[0], (argv, err)
        assert not (case/'out').exists() and not (case/'out.json').exists(), (argv, 'debris', list(case.iterdir()))
        assert [p.name for p in case.iterdir() if p.name not in ('data', 'runs')] == [], (argv, 'debris', list(case.iterdir()))
    after = snapshot(box, set())
    named = [Path(resolve(v, box, case)) for o, v in values.items() if o in dests and v is not None]   # outputs the user named
    mine = lambda k: code == 0 and any(box/k == n or n in (box/k).parents for n in named)             # may change on success
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k) and not mine(k))
    assert not changed, (argv, 'files outside the destination changed', changed[:5])
    COUNTS.setdefault(name, {}).setdefault(code, 0); COUNTS[name][code] += 1


def test_fuzz_cli_counts():
    "Prints how many cases ran per command and outcome (after the battery, in the same worker)."
    print('CLI fuzz cases (command: {exit code: count}):', json.dumps(COUNTS, sort_keys=True))
