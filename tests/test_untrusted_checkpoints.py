"""Reliability battery, part 5: untrusted checkpoints (issue 11; table in tests/README.md).

`load_checkpoint` reads with `weights_only=True` and turns every way a file can be wrong into one `CheckpointError`
(a `ConfigError`, so a `ValueError`; the CLI prints it as one line) naming the file; weights that do not fit list the
missing / unexpected keys and the shape mismatches with both shapes, a few of each plus the count.
"""
import os, pickle, re, subprocess, sys
from pathlib import Path

import pytest
import torch

from restaurant_actions.core import ConfigError
from restaurant_actions.models.registry import (CheckpointError, build_model, load_checkpoint, save_checkpoint,
                                                state_dict_problems)

EXE = Path(sys.executable).parent/'restaurant-actions'
KW = dict(num_classes=3, width=0.25)


@pytest.fixture(scope='module')
def good(tmp_path_factory):
    d = tmp_path_factory.mktemp('ck')
    m = build_model('yolov3_tiny', **KW)
    save_checkpoint(d/'good.pt', m, step=7, note='ok')
    return d/'good.pt', m


def shown(msg: str) -> dict:
    "`{kind: (count, [names shown], more)}` parsed from a CheckpointError message."
    out = {}
    for kind in ('with another shape', 'missing from the checkpoint', 'unexpected'):
        m = re.search(rf'(\d+) {kind} \((.*?)(?:, \.\.\. \((\d+) more\))?\)(?:;|$)', msg)
        if m: out[kind] = (int(m.group(1)), m.group(2), int(m.group(3) or 0))
    return out


def test_good_checkpoint_round_trip(good):
    path, m = good
    m2, ck = load_checkpoint(path)
    assert ck['step'] == 7 and ck['note'] == 'ok' and m2.spec == m.spec
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m2.state_dict().values()))
    m3, _ = load_checkpoint(path, model=build_model('yolov3_tiny', **KW))         # into an existing model
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), m3.state_dict().values()))


def test_wrong_class_count(good):
    "Same architecture, another number of classes: only the head convolutions differ; both shapes are given."
    path, _ = good
    with pytest.raises(CheckpointError) as e: load_checkpoint(path, model=build_model('yolov3_tiny', num_classes=5, width=0.25))
    msg, err = str(e.value), e.value
    assert msg.startswith(f'{path}: the weights (saved from yolov3_tiny(num_classes=3, width=0.25)) do not fit the model '
                          'yolov3_tiny(num_classes=5, width=0.25): ')
    assert not err.missing and not err.unexpected and err.mismatched
    k, a, b = err.mismatched[0]
    assert a[0] == 3 * (5 + 3) and b[0] == 3 * (5 + 5) and a[1:] == b[1:]          # 3 anchors x (5 + classes) outputs
    assert f'{k}: checkpoint {a}, model {b}' in msg
    n, names, more = shown(msg)['with another shape']
    assert n == len(err.mismatched) and more == max(0, n - 3) and names.count('checkpoint') == min(n, 3)
    assert isinstance(err, ConfigError) and isinstance(err, ValueError)


def test_wrong_architecture(good, tmp_path):
    "The state dict of another model under this spec (and this file into another model): counts and a few names."
    path, _ = good
    other = build_model('recurrent_yolov3_tiny', **KW)
    torch.save({'model_spec': {'name': 'yolov3_tiny', 'family': 'frame', 'kwargs': KW}, 'model': other.state_dict()}, tmp_path/'x.pt')
    with pytest.raises(CheckpointError) as e: load_checkpoint(tmp_path/'x.pt')
    err, msg = e.value, str(e.value)
    mine = build_model('yolov3_tiny', **KW).state_dict()
    assert err.missing == [k for k in mine if k not in other.state_dict()]
    assert err.unexpected == [k for k in other.state_dict() if k not in mine] and err.unexpected
    s = shown(msg)
    assert s['unexpected'][0] == len(err.unexpected) and s['unexpected'][2] == max(0, len(err.unexpected) - 3)
    assert all(k in msg for k in err.unexpected[:3]) and err.unexpected[-1] not in msg or len(err.unexpected) <= 3
    assert len(msg) < 1500, 'the message lists a few keys, not all of them'
    with pytest.raises(CheckpointError, match='do not fit the model recurrent_yolov3_tiny'):
        load_checkpoint(path, model=build_model('recurrent_yolov3_tiny', **KW))


def test_state_dict_problems_limits():
    exp = {f'k{i}': torch.zeros(i + 1) for i in range(10)}
    got = {**{f'k{i}': torch.zeros(i + 2) for i in range(5)}, 'extra': torch.zeros(1), 'k9': 'not a tensor'}
    missing, unexpected, mism, lines = state_dict_problems(exp, got, limit=2)
    assert missing == ['k5', 'k6', 'k7', 'k8'] and unexpected == ['extra']
    assert mism[0] == ('k0', [2], [1]) and mism[-1] == ('k9', 'str', [10]) and len(mism) == 6
    assert lines == ['6 with another shape (k0: checkpoint [2], model [1], k1: checkpoint [3], model [2], ... (4 more))',
                     '4 missing from the checkpoint (k5, k6, ... (2 more))', '1 unexpected (extra)']


@pytest.mark.parametrize('frac', [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(good, tmp_path, frac):
    data = good[0].read_bytes()
    (tmp_path/'cut.pt').write_bytes(data[:int(len(data) * frac)])
    with pytest.raises(CheckpointError, match=re.escape(f'{tmp_path}/cut.pt: not a')): load_checkpoint(tmp_path/'cut.pt')


@pytest.mark.parametrize('content', [b'hello, not a checkpoint\n', bytes(range(256)) * 4, b'PK\x03\x04' + b'\0' * 100,
                                     pickle.dumps([1, 2, 3], protocol=2), b'{"model_spec": {}}'])
def test_not_a_checkpoint(tmp_path, content):
    (tmp_path/'f.pt').write_bytes(content)
    with pytest.raises(CheckpointError, match=re.escape(f'{tmp_path}/f.pt: not a')): load_checkpoint(tmp_path/'f.pt')


def test_plain_state_dict_or_foreign_dict(tmp_path):
    torch.save(build_model('yolov3_tiny', **KW).state_dict(), tmp_path/'sd.pt')
    with pytest.raises(CheckpointError, match='not a restaurant_actions checkpoint'): load_checkpoint(tmp_path/'sd.pt')
    torch.save({'model_spec': {'name': 'no_such_model'}, 'model': {}}, tmp_path/'spec.pt')
    with pytest.raises(CheckpointError, match="its model spec no_such_model\\(\\) cannot be built"): load_checkpoint(tmp_path/'spec.pt')
    torch.save({'model_spec': {'name': 'yolov3_tiny', 'kwargs': {'num_classes': -4}}, 'model': {}}, tmp_path/'neg.pt')
    with pytest.raises(CheckpointError): load_checkpoint(tmp_path/'neg.pt')


class Evil:
    "Unpickling this would run `os.system`; weights_only must refuse it before anything runs."
    def __reduce__(self): return (os.system, ('touch PWNED_BY_CHECKPOINT',))


class Harmless:
    def __init__(self): self.x = 1


@pytest.mark.parametrize('payload', ['reduce', 'object', 'nested'])
def test_arbitrary_objects_refused(good, tmp_path, payload, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = build_model('yolov3_tiny', **KW)
    ck = {'model_spec': m.spec, 'model': m.state_dict()}
    if payload == 'reduce': ck['extra'] = Evil()
    elif payload == 'object': ck['extra'] = Harmless()
    else: ck['model'] = {**ck['model'], 'evil': [{'x': Evil()}]}
    torch.save(ck, tmp_path/'evil.pt')
    assert not (tmp_path/'PWNED_BY_CHECKPOINT').exists()
    with pytest.raises(CheckpointError, match=re.escape(f'{tmp_path}/evil.pt: refused: the file holds Python objects')):
        load_checkpoint(tmp_path/'evil.pt')
    assert not (tmp_path/'PWNED_BY_CHECKPOINT').exists(), 'loading ran code from the file'


def test_missing_file_is_not_a_checkpoint_error(tmp_path):
    with pytest.raises(FileNotFoundError): load_checkpoint(tmp_path/'nope.pt')


def test_cli_eval_one_line_error(tmp_path):
    "The installed command on a pickle with arbitrary objects: exit 2, one line naming the file, no traceback."
    torch.save({'model_spec': {'name': 'yolov3_tiny'}, 'model': {}, 'x': Evil()}, tmp_path/'evil.pt')
    r = subprocess.run([str(EXE), 'eval', str(tmp_path/'evil.pt'), '--data', str(tmp_path)], capture_output=True,
                       text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()] and r.stderr.startswith(f'{tmp_path}/evil.pt: refused'), r.stderr
    assert not (tmp_path/'PWNED_BY_CHECKPOINT').exists()
