"""Reliability battery, part 4: numerics (issue 11; table in tests/README.md).

NaN / inf injected into the inputs (pixels of one frame of chosen batches), the loss and the gradients. A bad step
must be skipped (no optimizer update: parameters and optimizer state bit for bit unchanged), counted
(`Trainer.skipped`, the summary, the checkpoint, `<name>.summary.json`) and marked (`history[i]['ok'] is False`);
`max_bad_steps` bad steps in a row stop the run with a `TrainingError` naming the step, the batch (video@frame) and the
last good checkpoint.

Where NaN can come from: frames are `uint8` from decoding to the frame cache (a corrupted cache cannot hold a NaN), so a
non-finite pixel can only appear after the dataset's conversion to float; it is injected there, by wrapping the
training dataset (`Trainer.data.data`) so that chosen items come out poisoned. Box coordinates are checked finite when
a dataset is loaded (part 1), so non-finite targets are only a defence-in-depth case here.
"""
import copy, json, math

import pytest
from helpers import tiny_training_data
import torch
from torch.utils.data import Dataset as TorchDataset

from restaurant_actions.data.splits import block_split
from restaurant_actions.data.synthetic import SynthConfig, make_synthetic
from restaurant_actions.data.video import FrameCache
from restaurant_actions.train import Trainer, TrainConfig, TrainingError

NAN, INF = float('nan'), float('inf')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "An 18-s single-view synthetic video (6 classes) cached at 64x64, and its held-out split."
    return tiny_training_data(tmp_path_factory.mktemp('numerics'))


def trainer(data, out=None, **over) -> Trainer:
    kw = dict(model='yolov3_tiny', model_kwargs=dict(width=0.125), input_size=[64, 64], steps=6, batch_size=4, warmup=1,
              eval_stride=8, max_bad_steps=3, device='cpu')
    return Trainer(TrainConfig(**{**kw, **over}), *data, out, name='run', progress=False)


def _key(i):
    "A hashable key of a dataset index (an int, or a sequence model's `SeqItem`)."
    return i if isinstance(i, int) else (i.video, tuple(int(f) for f in i.frames))


class Poisoned(TorchDataset):
    "The training dataset with `fn` applied to the items `bad` (dataset indices)."
    def __init__(self, base, bad, fn): self.base, self.bad, self.fn = base, {_key(i) for i in bad}, fn
    def __len__(self): return len(self.base)
    def set_epoch(self, epoch): self.base.set_epoch(epoch)
    def __getitem__(self, i):
        it = self.base[i]
        return self.fn(dict(it)) if _key(i) in self.bad else it


def pixel(value, key='image'):
    "Set one pixel of the item's input (an image, a clip or a sequence of frames) to `value`."
    def fn(it):
        x = it[key].clone(memory_format=torch.contiguous_format); x.view(-1)[x.numel() // 2] = value; it[key] = x
        return it
    return fn


def poison(tr, steps, fn, micro=(0,)):
    "Poison the first item of micro-batches `micro` of optimizer steps `steps` (1-based, first epoch)."
    b, A = tr.data.batches(0), tr.cfg.accumulate
    tr.data.data = Poisoned(tr.data.data, [b[(s - 1) * A + m][0] for s in steps for m in micro], fn)
    return [b[(s - 1) * A + m] for s in steps for m in micro]


def watch(tr) -> list:
    "Per step: ok, how many parameter tensors moved, whether the optimizer state changed."
    log, upd = [], tr._update
    def wrapped(micro):
        p0 = {k: v.detach().clone() for k, v in tr.model.named_parameters()}
        o0 = copy.deepcopy(tr.opt.state_dict()['state'])
        r = upd(micro)
        o1 = tr.opt.state_dict()['state']
        opt_changed = set(o0) != set(o1) or any(not torch.equal(o0[i][k], o1[i][k]) for i in o0 for k in o0[i])
        log.append(dict(ok=r['ok'], moved=sum(not torch.equal(v, p0[k]) for k, v in tr.model.named_parameters()),
                        opt_changed=opt_changed, state=tr.state))
        return r
    tr._update = wrapped
    return log


def assert_skips(tr, log, summary, bad_steps, steps):
    ok = [s not in bad_steps for s in range(1, steps + 1)]
    assert [h['ok'] for h in tr.history] == ok and [h['ok'] for h in summary['history']] == ok
    assert tr.skipped == summary['skipped'] == len(bad_steps) and summary['steps'] == steps
    for s, w in enumerate(log, 1):
        if s in bad_steps: assert w['moved'] == 0 and not w['opt_changed'], (s, w)   # no update reached the weights
        else: assert w['moved'] > 0 and w['opt_changed'], (s, w)                    # (and the good ones did update)
    for k, v in tr.model.named_parameters(): assert torch.isfinite(v).all(), k


@pytest.mark.parametrize('value', [NAN, INF, -INF], ids=['nan', 'inf', '-inf'])
def test_nonfinite_input_steps_are_skipped_and_counted(data, tmp_path, value):
    "One non-finite pixel in one frame of steps 2 and 4: both skipped, counted, reported; the others train normally."
    tr = trainer(data, tmp_path, checkpoint_every=2)
    poison(tr, [2, 4], pixel(value)); log = watch(tr)
    s = tr.fit()
    assert_skips(tr, log, s, {2, 4}, 6)
    assert all(not math.isfinite(h['loss']) for h in tr.history if not h['ok'])       # the bad loss is recorded as is
    saved = json.loads((tmp_path/'run.summary.json').read_text())                 # what the run reports on disk
    assert saved['skipped'] == 2 and [h['ok'] for h in saved['history']] == [True, False, True, False, True, True]
    ck = torch.load(tmp_path/'run.last.pt', weights_only=True)
    assert (ck['skipped'], ck['bad'], ck['step']) == (2, 0, 6)


@pytest.mark.parametrize('where', ['loss-nan', 'loss-inf', 'grad-nan', 'grad-inf'])
def test_nonfinite_loss_or_gradient_is_skipped(data, where):
    "A non-finite loss (steps 2, 3) or a finite loss with a non-finite gradient in one parameter: skipped, counted."
    tr = trainer(data)
    bad, calls = {2, 3}, [0]
    value = NAN if where.endswith('nan') else INF
    if where.startswith('loss'):
        real = tr.model.loss
        def loss(outs, targets):
            calls[0] += 1; l, parts = real(outs, targets)
            return (l * value if calls[0] in bad else l), parts
        tr.model.loss = loss
    else:
        p = next(p for n, p in tr.model.named_parameters() if n.endswith('weight') and p.ndim == 4)
        def hook(g):
            calls[0] += 1
            return g * value if calls[0] in bad else g
        p.register_hook(hook)
    log = watch(tr)
    s = tr.fit()
    assert_skips(tr, log, s, bad, 6)
    if where.startswith('grad'): assert all(math.isfinite(h['loss']) for h in tr.history)   # only the gradient was bad


def test_one_bad_micro_batch_skips_the_whole_accumulated_step(data):
    "accumulate=2: a NaN in the second micro-batch of step 2 discards the gradient of both micro-batches."
    tr = trainer(data, batch_size=8, accumulate=2, steps=4)
    poison(tr, [2], pixel(NAN), micro=(1,)); log = watch(tr)
    assert_skips(tr, log, tr.fit(), {2}, 4)


def test_sequence_model_drops_its_state_after_a_bad_step(data):
    "Recurrent YOLO: a NaN frame in step 2 is skipped and the LSTM state is not carried into step 3."
    tr = trainer(data, model='recurrent_yolov3_tiny', batch_size=2, T=4, clip_min=20, clip_max=60, clip_pad=5, steps=4)
    poison(tr, [2], pixel(NAN, 'frames')); log = watch(tr)
    s = tr.fit()
    assert_skips(tr, log, s, {2}, 4)
    assert log[1]['state'] is None and log[0]['state'] is not None and log[2]['state'] is not None


def test_clip_model_skips_a_nonfinite_clip(data):
    "YOWO: an inf pixel in one frame of a clip in step 2: skipped, counted, weights untouched."
    tr = trainer(data, model='yowo', model_kwargs=dict(backbone_3d='resnet18', width_mult=0.25, width_2d=0.125, cfam_channels=32),
                 batch_size=2, T=4, steps=3)
    poison(tr, [2], pixel(INF, 'clip')); log = watch(tr)
    assert_skips(tr, log, tr.fit(), {2}, 3)


def test_too_many_bad_steps_in_a_row_stop_with_a_clear_message(data, tmp_path):
    """Steps 3, 4, 5 with a NaN pixel and max_bad_steps=3: `TrainingError` at step 5 naming the batch (every video@frame of
    it) and the last checkpoint (step 4), which loads with finite parameters; non-consecutive bad steps do not count."""
    tr = trainer(data, tmp_path, steps=8, checkpoint_every=2)
    batches = poison(tr, [3, 4, 5], pixel(NAN))
    items = [tr.data.data.base[i] for i in batches[-1]]
    with pytest.raises(TrainingError) as e: tr.fit()
    desc = ', '.join(f"{it['video']}@{it['frame']}" for it in items)
    assert str(e.value) == (f'step 5: 3 consecutive steps with a non-finite loss or gradient; last batch: {desc}. '
                            f"The last good checkpoint is {tmp_path/'run.last.pt'}"), str(e.value)
    assert tr.skipped == 3 and [h['ok'] for h in tr.history] == [True, True, False, False, False]
    ck = torch.load(tmp_path/'run.last.pt', weights_only=True)
    assert (ck['step'], ck['skipped'], ck['bad']) == (4, 2, 2)
    assert all(torch.isfinite(ck['model'][k]).all() for k, _ in tr.model.named_parameters())
    # bad, good, bad, good, bad with max_bad_steps=2: never two in a row, the run completes
    tr = trainer(data, steps=6, max_bad_steps=2)
    poison(tr, [1, 3, 5], pixel(NAN))
    assert tr.fit()['skipped'] == 3


@pytest.mark.parametrize('value', [NAN, INF, -INF, 1e30], ids=['nan', 'inf', '-inf', '1e30'])
def test_nonfinite_target_boxes_never_reach_the_weights(data, value):
    """A box coordinate (y1 of the first box of each item of steps 2 and 4) set to `value`: the loss drops the box as
    degenerate (nan, inf, 1e30: y2 - y1 > 0 fails) or the step is skipped (-inf: the box is kept, the loss is NaN).
    Either way no non-finite value reaches the parameters. (Loaders refuse such boxes before training.)"""
    tr = trainer(data)
    b = tr.data.batches(0)
    def fn(it):
        if len(it['boxes']): it['boxes'] = it['boxes'].clone(); it['boxes'][0, 1] = value
        return it
    tr.data.data = Poisoned(tr.data.data, set(b[1]) | set(b[3]), fn)
    log = watch(tr)
    s = tr.fit()
    skipped = {i + 1 for i, w in enumerate(log) if not w['ok']}
    assert skipped == ({2, 4} if value == -INF else set()), skipped
    assert_skips(tr, log, s, skipped, 6)


def test_bad_input_does_not_poison_batchnorm_statistics(data):
    "After a skipped NaN-input step the BatchNorm running statistics are finite and those of before the step."
    tr = trainer(data, steps=2)
    poison(tr, [2], pixel(NAN))
    buffers = []
    upd = tr._update
    def wrapped(micro):
        r = upd(micro); buffers.append({k: v.clone() for k, v in tr.model.named_buffers() if 'running' in k}); return r
    tr._update = wrapped
    s = tr.fit()
    assert s['skipped'] == 1
    bad = [k for k, v in buffers[1].items() if not torch.isfinite(v).all()]
    assert not bad, f'{len(bad)} BatchNorm buffers non-finite after the skipped step, e.g. {bad[:3]}'
    assert all(torch.equal(buffers[0][k], buffers[1][k]) for k in buffers[0])
