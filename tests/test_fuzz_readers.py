"""Reliability battery, part 1: fuzzed annotation files through every reader (issue 11; table in tests/README.md).

Valid files are written by the writers (`write_native`, `write_yowo`, `write_ava`, `write_cvat`) from one small
dataset, then mutated by hypothesis: byte flips, truncation, deleted/duplicated lines, swapped fields, huge /
negative / NaN / inf numbers, wrong JSON types, unicode, nesting bombs, empty, garbage and missing files. The only
allowed outcomes of a reader are a `Dataset` that passes `validate_dataset`, or an `AnnotationError` whose every
problem is one line naming a file of the input (`<file>:<line or JSON path>: <what>`). Each case also runs `convert`
into a non-empty destination (overwrite): it must end fully written (read back) or untouched, with no temporary
folder left. Everything runs in-process; a per-case alarm turns a hang into a failure.

Cases: 200 per reader by default, 1000 when $RESTAURANT_ACTIONS_TEST_FLAGS contains "slow"; `derandomize=True`
makes every run the same. The counts actually run are printed and written to `<pytest basetemp>/fuzz_counts.json`.
"""
import ast, contextlib, json, os, re, shutil, signal, subprocess, sys, warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from restaurant_actions.core import MANIFEST, ConfigError, output_folder
from restaurant_actions.data.annotations import AnnotationError, Dataset, Tube, Video, load_dataset, validate_dataset
from restaurant_actions.data.formats import (convert, read_annotations, read_label_map, write_ava, write_cvat,
                                             write_native, write_yowo)

ROOT = Path(__file__).resolve().parents[1]
EXE = Path(sys.executable).parent/'restaurant-actions'
SLOW = 'slow' in os.environ.get('RESTAURANT_ACTIONS_TEST_FLAGS', '').split()
N_CASES = 1000 if SLOW else 200
CASE_TIMEOUT_S = 10
FUZZ = settings(max_examples=N_CASES, derandomize=True, deadline=None, database=None, print_blob=False,
                suppress_health_check=list(HealthCheck))

SIZES = {'c0': (32, 24, 8), 'c1': (40, 30, 6)}
OPTIONS = dict(native=dict(check_files=True), yowo=dict(), ava=dict(fps=1.0, video_sizes=SIZES), cvat=dict(fps=1.0))


def make_dataset(root: Path) -> Dataset:
    "Two frame-folder videos of different sizes, three classes (one with a space and a comma), tubes with a gap and actors."
    for vid, (w, h, n) in SIZES.items():
        for k in range(n):
            (root/'videos'/vid).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root/'videos'/vid/f'{k:06d}.jpg'), np.full((h, w, 3), 20 * k, np.uint8))
    videos = [Video(vid, f'videos/{vid}', 1.0, w, h, n, view=vid) for vid, (w, h, n) in SIZES.items()]
    tubes = [Tube(0, 'c0', 0, [1, 2, 3], [[2, 3, 12, 14], [3, 3, 13, 14], [4, 3, 14.5, 14]], actor=1),
             Tube(1, 'c0', 2, [2, 3], [[20, 5, 30, 20], [20, 5, 30, 20]], actor=2),
             Tube(2, 'c1', 1, [0, 1, 2, 4], [[0, 0, 10, 10], [1, 0, 11, 10], [2, 0, 12, 10], [30, 20, 40, 30]])]
    ds = Dataset(['cook', 'serve plate', 'wipe, clean'], videos, tubes, root=root)
    validate_dataset(ds, check_files=True)
    return ds


@pytest.fixture(scope='module')
def fixtures(tmp_path_factory):
    "`{fmt: folder}` of valid inputs in each format (files copied, not hard-linked, so mutations stay local)."
    base = tmp_path_factory.mktemp('fuzz')
    ds = make_dataset(base/'src')
    out = {}
    for fmt, wr in dict(native=write_native, yowo=write_yowo, ava=write_ava, cvat=write_cvat).items():
        wr(ds, base/f'{fmt}.tmp')
        shutil.copytree(base/f'{fmt}.tmp', base/fmt); shutil.rmtree(base/f'{fmt}.tmp')
        read_annotations(base/fmt, fmt, **OPTIONS[fmt])       # the unmutated input parses
    return base, out | {fmt: base/fmt for fmt in OPTIONS}


def targets(fmt: str, root: Path) -> list:
    "Files a mutation may hit (relative paths), annotation text first; YOWO also gets its first image."
    if fmt == 'native': return ['annotations.json', 'annotations.json', 'classes.txt']
    if fmt == 'ava': return ['annotations.csv', 'annotations.csv', 'action_list.pbtxt']
    if fmt == 'cvat': return ['c0.xml', 'c1.xml']
    labels = sorted(p.relative_to(root).as_posix() for p in (root/'labels').rglob('*.txt'))
    return ['trainlist.txt', 'testlist.txt', 'testlist_video.txt', 'classes.txt', *labels[:6],
            sorted(p.relative_to(root).as_posix() for p in (root/'rgb-images').rglob('*.jpg'))[0]]


# ---------------------------------------------------------------------------------------------------- mutations
SPECIALS = [b'nan', b'NaN', b'inf', b'-inf', b'Infinity', b'1e309', b'-1', b'-0', b'0', b'0.0', b'1e9', b'2147483648',
            b'99999999999999999999999999', b'-99999999999999999999', b'1.5', b'0x1F', b'', b' ', b'abc', b'null',
            b'true', b'"s"', b'[]', b'{}', '\u0661\u0662'.encode(), '\uff11'.encode(), b'1_000', b'+3', b'\xff\xfe',
            b'1e-320', b'3.4e38', b'9' * 400]
NUMBER = re.compile(rb'-?\d+(?:\.\d+)?')
TOKEN = re.compile(rb'[^\s,"<>=/]+')
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=6)
                           | st.sampled_from([10**30, -10**30, 2**63, -1, 0, float('nan'), float('inf')]),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                           max_leaves=8)


def _json_paths(x, path=()):
    yield path
    if isinstance(x, dict):
        for k, v in x.items(): yield from _json_paths(v, path + (k,))
    elif isinstance(x, list):
        for i, v in enumerate(x): yield from _json_paths(v, path + (i,))


def mutate_json(orig: bytes, draw) -> bytes:
    "Replace, delete or duplicate one node of the JSON document (wrong types, huge numbers, missing keys...)."
    doc = json.loads(orig)
    paths = list(_json_paths(doc))
    path = draw(st.sampled_from(paths[1:]))
    parent = doc
    for k in path[:-1]: parent = parent[k]
    how = draw(st.sampled_from(['replace', 'replace', 'delete', 'duplicate']))
    if how == 'replace': parent[path[-1]] = draw(JSON_VALUES)
    elif how == 'delete': del parent[path[-1]]
    elif isinstance(parent, list): parent.insert(path[-1], parent[path[-1]])
    else: parent[path[-1] + '_'] = parent[path[-1]]
    return json.dumps(doc, allow_nan=True).encode()


def mutate(fmt: str, rel: str, orig: bytes, draw):
    "The mutated bytes of file `rel` (None: delete it) and a short description of the mutation."
    ops = ['flip', 'truncate', 'del_line', 'dup_line', 'swap', 'number', 'number', 'unicode', 'empty', 'missing', 'garbage', 'bomb']
    if rel.endswith('.json'): ops += ['json'] * 4
    op = draw(st.sampled_from(ops))
    n = len(orig)
    if op == 'missing': return None, op
    if op == 'empty': return b'', op
    if op == 'garbage': return draw(st.binary(max_size=300)), op
    if op == 'truncate': return orig[:draw(st.integers(0, max(n - 1, 0)))], op
    if op == 'flip' and n:
        b = bytearray(orig)
        for _ in range(draw(st.integers(1, 4))): b[draw(st.integers(0, n - 1))] = draw(st.integers(0, 255))
        return bytes(b), op
    if op == 'unicode':
        at = draw(st.integers(0, n))
        return orig[:at] + draw(st.text(min_size=1, max_size=8)).encode('utf-8', 'surrogatepass') + orig[at:], op
    lines = orig.splitlines(keepends=True)
    if op in ('del_line', 'dup_line') and lines:
        k = draw(st.integers(0, len(lines) - 1))
        return b''.join(lines[:k] + ([lines[k]] * 2 if op == 'dup_line' else []) + lines[k + 1:]), op
    if op == 'swap' and lines:
        k = draw(st.integers(0, len(lines) - 1))
        toks = list(TOKEN.finditer(lines[k]))
        if len(toks) >= 2:
            i, j = sorted(draw(st.lists(st.integers(0, len(toks) - 1), min_size=2, max_size=2, unique=True)))
            a, b, L = toks[i], toks[j], lines[k]
            lines[k] = L[:a.start()] + b.group() + L[a.end():b.start()] + a.group() + L[b.end():]
        return b''.join(lines), op
    if op == 'number' and (nums := list(NUMBER.finditer(orig))):
        m = draw(st.sampled_from(nums))
        v = draw(st.sampled_from(SPECIALS) | st.integers(-10**12, 10**12).map(lambda i: str(i).encode())
                 | st.floats().map(lambda f: repr(f).encode()))
        return orig[:m.start()] + v + orig[m.end():], op
    if op == 'bomb':
        depth = draw(st.sampled_from([1000, 100_000]))
        if rel.endswith('.json'): return b'[' * depth + b']' * depth, op
        if rel.endswith('.xml'): return orig.replace(b'</annotations>', b'<x>' * depth + b'</x>' * depth + b'</annotations>'), op
        return orig + b'{' * depth + b'\n' * draw(st.integers(0, 3)), op
    if op == 'json': return mutate_json(orig, draw), op
    return orig, 'none'


# ---------------------------------------------------------------------------------------------------- oracle
class CaseTimeout(Exception): pass


@contextlib.contextmanager
def time_limit(seconds: float):
    "Fail a case that runs longer than `seconds` (a hang) instead of blocking the suite."
    def handler(*_): raise CaseTimeout(f'case took longer than {seconds} s (hang?)')
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try: yield
    finally: signal.setitimer(signal.ITIMER_REAL, 0); signal.signal(signal.SIGALRM, old)


def check_problems(e: AnnotationError, root: Path):
    "Every problem is one line `<file under root>[:<line or field>]: <what>`, the file named in full."
    assert e.problems, 'AnnotationError without problems'
    for pr in e.problems:
        assert '\n' not in pr and '\r' not in pr, f'problem spans several lines: {pr!r}'
        assert pr.startswith(str(root)), f'problem does not name a file of the input: {pr!r}'
        rest = pr[len(str(root)):]
        assert re.match(r'^[^:]*(:\S+?)?: \S', rest), f'not <file>[:<where>]: <what>: {pr!r}'
        m = re.match(r'^([^:]*):(\d+)(?::\d+)?: ', rest)
        if m and (f := Path(str(root) + m.group(1))).is_file():      # a line number lies inside the file
            assert 1 <= int(m.group(2)) <= len(re.split(rb'\r\n|\r|\n', f.read_bytes())), f'line out of range in {pr!r}'


def check_read(fmt: str, root: Path):
    "Read `root` as `fmt`: a valid Dataset or a well-formed AnnotationError; returns the dataset or None."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('error', RuntimeWarning)        # numpy overflow / invalid casts on input are bugs too
            ds = read_annotations(root, fmt, **OPTIONS[fmt])
    except AnnotationError as e: check_problems(e, root); return None
    assert isinstance(ds, Dataset)
    validate_dataset(ds)
    return ds


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob('*')) if p.is_file()}


def check_convert(fmt: str, src: Path, dst: Path, dst_fmt: str, ok: bool):
    "`convert` over an earlier output of ours (overwrite): fully written, or `dst` untouched; no temporary folder left."
    if dst.exists(): shutil.rmtree(dst)
    with output_folder(dst) as tmp: (tmp/'keep.txt').write_text('sentinel')     # an earlier output of ours: overwrite may replace it
    before = snapshot(dst)
    try: ds = convert(src, dst, src_fmt=fmt, dst_fmt=dst_fmt, overwrite=True, annotations_only=fmt in ('ava', 'cvat'),   # their videos
                      **OPTIONS[fmt])                                                                       # lie elsewhere
    except (AnnotationError, ConfigError) as e:
        if isinstance(e, AnnotationError): check_problems(e, src)
        assert snapshot(dst) == before, 'a failed convert changed the destination'
    else:
        assert ok, 'convert accepted an input the reader rejected'
        assert not (dst/'keep.txt').exists()
        if dst_fmt == 'cvat' and not ds.videos: assert [p.name for p in dst.iterdir()] == [MANIFEST]; return   # no video, no XML
        back = read_annotations(dst, dst_fmt, **({'video_sizes': {v.id: (v.width, v.height, v.num_frames) for v in ds.videos},
                                                  'fps': ds.videos[0].fps if ds.videos else 1.0} if dst_fmt == 'ava' else {}))
        if dst_fmt == 'native':
            key = lambda v: (v.id, v.fps, v.width, v.height, v.num_frames, v.view, v.annotated)   # files move into videos/
            assert back.classes == ds.classes and back.tubes == ds.tubes
            assert list(map(key, back.videos)) == list(map(key, ds.videos))
        else: assert len(back.videos) <= len(ds.videos)
    left = [p.name for p in dst.parent.iterdir() if p.name.startswith(f'.{dst.name}.')]
    assert not left, f'temporary output left behind: {left}'


COUNTS = {}


@pytest.mark.parametrize('fmt', ['native', 'yowo', 'ava', 'cvat'])
def test_fuzz_reader(fmt, fixtures, tmp_path_factory):
    base, folders = fixtures
    root = folders[fmt]
    files = targets(fmt, root)
    originals = {rel: (root/rel).read_bytes() for rel in set(files)}
    dst = base/f'{fmt}_out'/'dst'
    n = dict(cases=0, parsed=0, rejected=0)

    @FUZZ
    @given(st.data())
    def case(data):
        rel = data.draw(st.sampled_from(files), label='file')
        new, op = mutate(fmt, rel, originals[rel], data.draw)
        data.draw(st.just(op), label='mutation')
        f = root/rel
        try:
            f.unlink()                                       # a new inode: hard links elsewhere stay intact
            if new is not None: f.write_bytes(new)
            with time_limit(CASE_TIMEOUT_S):
                ds = check_read(fmt, root)
                check_convert(fmt, root, dst, data.draw(st.sampled_from(['native', 'native', fmt, 'cvat'])), ds is not None)
        finally:
            f.unlink(missing_ok=True); f.write_bytes(originals[rel])
        n['cases'] += 1; n['parsed' if ds is not None else 'rejected'] += 1

    case()
    COUNTS[fmt] = n
    out = tmp_path_factory.getbasetemp()/'fuzz_counts.json'
    prev = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**prev, fmt: n}, indent=1))
    print(f'fuzz {fmt}: {n} -> {out}')
    assert n['cases'] >= N_CASES * 0.9, n
    assert n['rejected'] > 0 and n['parsed'] > 0, n


def test_fuzz_label_map(tmp_path, tmp_path_factory):
    "The AVA label map reader alone, on mutations of its own (it also runs inside the AVA reader above)."
    f = tmp_path/'map.pbtxt'
    orig = ('item {\n  name: "cook"\n  id: 1\n}\nlabel {\n  name: "serve \\"plate\\""\n  label_id: 3\n}\n'
            '# a comment\nitem { name: "wipe" id: 7 }\n').encode()
    f.write_bytes(orig)
    assert read_label_map(f) == (['cook', 'serve "plate"', 'wipe'], [1, 3, 7])
    n = [0]

    @settings(FUZZ, max_examples=N_CASES // 2)
    @given(st.data())
    def case(data):
        new, _ = mutate('ava', 'map.pbtxt', orig, data.draw)
        f.unlink(missing_ok=True)
        if new is not None: f.write_bytes(new)
        with time_limit(CASE_TIMEOUT_S):
            try: names, ids = read_label_map(f)
            except AnnotationError as e: check_problems(e, tmp_path)
            else: assert len(names) == len(ids) == len(set(ids)) > 0 and ids == sorted(ids) and all(i >= 1 for i in ids)
        n[0] += 1
    case()
    print(f'fuzz label_map: {n[0]} cases')
    out = tmp_path_factory.getbasetemp()/'fuzz_counts.json'
    prev = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps({**prev, 'label_map': dict(cases=n[0])}, indent=1))
    assert n[0] >= N_CASES // 2 * 0.9


# ---------------------------------------------------------------------------------------------------- static check
READER_MODULES = ['restaurant_actions/data/annotations.py', 'restaurant_actions/data/formats.py']


def _broad(handler: ast.ExceptHandler) -> bool:
    t = handler.type
    names = [] if t is None else [e for e in (t.elts if isinstance(t, ast.Tuple) else [t])]
    return t is None or any(isinstance(e, ast.Name) and e.id in ('Exception', 'BaseException') for e in names)


def test_readers_swallow_no_errors():
    "No bare `except:` / `except Exception` / `except BaseException` in the readers, unless it re-raises (cleanup)."
    bad = []
    for rel in READER_MODULES:
        tree = ast.parse((ROOT/rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ExceptHandler) and _broad(node):
                reraises = any(isinstance(s, ast.Raise) and s.exc is None for s in node.body)
                if not reraises: bad.append(f'{rel}:{node.lineno}: broad except that does not re-raise')
    assert not bad, '\n'.join(bad)


# ---------------------------------------------------------------------------------------------------- the CLI
def cli(*args):
    return subprocess.run([str(EXE), *map(str, args)], capture_output=True, text=True, timeout=120)


def one_line_errors(r, path):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert 'Traceback' not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    if len(lines) == 1: assert lines[0].startswith(str(path)), lines
    else:
        assert re.fullmatch(r'\d+ problems? found', lines[-1]) and int(lines[-1].split()[0]) == len(lines) - 1, lines
        assert all(l.startswith(str(path)) for l in lines[:-1]), lines


def test_cli_on_fuzzed_files(tmp_path):
    "Three mutated inputs through the installed command (each start costs seconds): exit 2, one line per problem, no traceback."
    ds = make_dataset(tmp_path/'src')
    write_native(ds, tmp_path/'native')
    aj = tmp_path/'native'/'annotations.json'
    aj.write_bytes(b'[' * 100_000 + b']' * 100_000)                      # nesting bomb (was a RecursionError)
    one_line_errors(cli('validate', tmp_path/'native'), tmp_path/'native')

    write_ava(ds, tmp_path/'ava')
    (tmp_path/'ava'/'annotations.csv').write_bytes(os.urandom(64) + b'\nc0,0001,0.1,0.1,0.5,0.5,9999999999999,1\n')
    one_line_errors(cli('validate', tmp_path/'ava', '-o', 'fps=1', '-o', 'video_sizes={"c0": [32, 24, 8]}'), tmp_path/'ava')

    write_cvat(ds, tmp_path/'cvat')
    x = tmp_path/'cvat'/'c0.xml'
    x.write_text(x.read_text().replace('xtl="2.00"', 'xtl="-1e999"').replace('</annotations>', '<track label="cook">'))
    r = cli('convert', tmp_path/'cvat', tmp_path/'out', '--to', 'yowo', '-o', 'fps=1')
    one_line_errors(r, tmp_path/'cvat')
    assert not (tmp_path/'out').exists() and not [p for p in tmp_path.iterdir() if p.name.startswith('.out.')]
