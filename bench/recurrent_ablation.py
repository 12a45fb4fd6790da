"""Issue 23: what makes the Recurrent YOLO use motion. One change at a time from the study's architecture (chapter 13's
table), each a row: the look-alike pairs' AP (mean of the pairs' classes, scored as YOWO's files are and per class, and
the best class), the object-defined actions' AP, the direction probe (held-out ROC AUC of the first scored pair on the
features before the ConvLSTM, its state and after the block, the model run through the footage as it detects, chapter
24c), training seconds and GFLOPs per frame; and two controls: the ported frame baseline itself, and the same
frame model fine-tuned for the Recurrent YOLO's budget without any ConvLSTM (does a row gain by motion or by training
longer?).

Each row starts from the seed's frame baseline (02_yolo_baseline, trained here if missing) with the seed's training
seed, trains with the quick profile's sequence settings plus the row's change, and is scored as the report scores
(`run_variant`): rows already scored are read back. The study's row is 03_recurrent_yolo's late run where it exists.

    python bench/recurrent_ablation.py --profile quick --seed 0 --rows study,lr10,step3
    python bench/recurrent_ablation.py --list

Results: runs/<profile>/seed-<n>/03b_recurrent_ablation/ (one `<row>.metrics.json` and `<row>.probe.json` per row) and
a Markdown table on stdout.
"""
import argparse, json, sys, time
from pathlib import Path

import torch

from restaurant_actions.core import ConfigError, save_json
from restaurant_actions.experiments import get_profile, setup_experiment
from restaurant_actions.families import family_of
from restaurant_actions.models.registry import count_flops, load_checkpoint
from restaurant_actions.probes import checkpoint_probe
from restaurant_actions.runs import (BASELINE, FRAME_BASELINE, RECURRENT, baseline_config, experiment_data,
                                     find_variant, recurrent_variant, run_variant, sequence_clip_min, top_classes, train_config,
                                     upstream)
from restaurant_actions.scoring import scored_pairs

NAME = '03b_recurrent_ablation'
BLOCKS = {'blocks.': 10}          # the ConvLSTM blocks (new layers) at 10× the ported layers' rate
CPN = dict(class_path=True, state_norm=1)      # the state's class path, read through a per-channel GroupNorm
PROBE = 'stream'                  # how the stored probes were run (chapter 24c); others are run again

# row: (what changes from the study's architecture, TrainConfig overrides, model_kwargs overrides); 'frame_more' is
# the control without ConvLSTM (role 'frame'); the study's row has no change
ROWS = {
    'study': ("the study's: late, hidden ¼ of the channels, 4-frame sub-sequences of consecutive frames, one rate", {}, {}),
    'lr10': ('the ConvLSTM blocks at 10× the rate (parameter groups)', dict(lr_mult=BLOCKS), {}),
    'step3': ('sparse frames: every 3rd (a 4-frame sub-sequence spans 1.2 s, as YOWO\'s clip)', dict(frame_step=3), {}),
    'T8': ('8-frame sub-sequences (back-propagation through 8 frames)', dict(T=8), {}),
    'early': ('early placement (the backbone\'s maps at each head\'s stride)', {}, dict(placement='early')),
    'hidden05': ('hidden width ½ of the channels', {}, dict(hidden=0.5)),
    'lr10_step3': ('10× rate and every 3rd frame', dict(lr_mult=BLOCKS, frame_step=3), {}),
    'lr10_step3_early': ('10× rate, every 3rd frame, early', dict(lr_mult=BLOCKS, frame_step=3), dict(placement='early')),
    'steps4x': ('4× the training steps', dict(steps_mult=4), {}),
    'state_norm': ('P reads the state through a per-channel GroupNorm', {}, dict(state_norm=1)),
    'class_path': ('a 1×1 path from the state to the head\'s class logits (zero at start)', {}, dict(class_path=True)),
    'class_path_lr10': ('class path, blocks at 10× the rate', dict(lr_mult=BLOCKS), dict(class_path=True)),
    'class_path_norm': ('class path, state through a per-channel GroupNorm', {}, CPN),
    'class_path_norm_in': ('class path, state and ConvLSTM input through GroupNorms', {}, dict(CPN, input_norm=8)),
    'class_path_norm_lr10': ('class path, normalised state, blocks at 10× the rate', dict(lr_mult=BLOCKS), CPN),
    'class_path_norm_lr10_x4': ('the same for 4× the steps', dict(lr_mult=BLOCKS, steps_mult=4), CPN),
    'class_path_norm_lr10_predict': ('the same, plus a loss: the state predicts the next frame\'s feature change',
                                     dict(lr_mult=BLOCKS), dict(CPN, predict=1.0)),
    'class_path_norm_lr10_clip40': ('the same, training clips cut to 40 frames (4× as many streams\' clips)',
                                    dict(lr_mult=BLOCKS, clip_max=40), CPN),
    'class_path_norm_lr10_frozen': ('the same, the ported layers frozen (rate × 0.001): only the blocks learn',
                                    dict(lr_mult={**BLOCKS, 'yolo.': 0.001}), CPN),
    'stride4_norm_lr10': ('one block at stride 4 (module 4 of YOLOv3-tiny), normalised state, 10× rate',
                          dict(lr_mult=BLOCKS), dict(placement=[4], state_norm=1)),
    'motion': ('the ConvLSTM also reads its input\'s change since the previous frame (motion input)', {}, dict(motion='features')),
    'motion_step3': ('motion input, every 3rd frame', dict(frame_step=3), dict(motion='features')),
    'motion_cpn_lr10': ('motion input, class path, normalised state, 10× rate', dict(lr_mult=BLOCKS),
                        dict(CPN, motion='features')),
    'motion_step3_lr10': ('motion input, every 3rd frame, blocks at 10× the rate', dict(frame_step=3, lr_mult=BLOCKS),
                          dict(motion='features')),
    'motion_step3_x2': ('motion input, every 3rd frame, 2× the steps', dict(frame_step=3, steps_mult=2),
                        dict(motion='features')),
    'pixels': ('the ConvLSTM also reads a new small CNN of the pixels\' change since the previous frame', {},
               dict(motion='pixels')),
    'pixels_step3': ('pixel motion, every 3rd frame', dict(frame_step=3), dict(motion='pixels')),
    'pixels_cpn_lr10': ('pixel motion, class path, normalised state, 10× rate', dict(lr_mult={**BLOCKS, 'stem.': 10}),
                        dict(CPN, motion='pixels')),
    'frame_more': ('control: the frame model fine-tuned for the same budget, no ConvLSTM', {}, {}),
    'frame_more_x2': ('control: the same for 2× the steps', dict(steps_mult=2), {}),
}


def row_config(exp, row: str, classes: list, seed: int, base_ck):
    "The TrainConfig of `row`."
    p = exp.profile
    _, over, kw = ROWS[row]
    over = dict(over)
    if 'steps_mult' in over: over['steps'] = p.steps * over.pop('steps_mult')
    if row.startswith('frame_more'):  # the sequence role's budget and rate, in frames per step too
        return train_config(p, 'frame', classes, seed, init=str(base_ck), steps=over.get('steps', p.steps),
                            batch_size=p.seq_batch * p.seq_T, lr=p.seq_lr, freeze_bn=True)
    cfg = train_config(p, 'sequence', classes, seed, init=str(base_ck), **over)
    if 'frame_step' in over or 'T' in over:          # training clips long enough for two sub-sequences
        cfg = cfg.replace(clip_min=sequence_clip_min(cfg.T, cfg.frame_step))
    return cfg.replace(model_kwargs={**cfg.model_kwargs, 'placement': 'late', **kw}).check()


def gflops_per_frame(ck: Path, size) -> float:
    net, c = load_checkpoint(ck)
    fam, T = family_of(net), c['model_spec'].get('T', 1)
    shape = fam.example_input(tuple(size), T)
    return count_flops(net.eval(), torch.zeros(shape)) / 1e9 / fam.key_frames(T)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--profile', default='quick')
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--rows', default='study,frame_more,lr10,step3', help=f"comma-separated, of: {', '.join(ROWS)}")
    ap.add_argument('--list', action='store_true', help='list the rows and exit')
    ap.add_argument('--no-probe', action='store_true', help='run no probe: show only the probes already stored')
    a = ap.parse_args(argv)
    if a.list:
        for k, (what, *_) in ROWS.items(): print(f'{k:18s} {what}')
        return 0
    rows = [r.strip() for r in a.rows.split(',') if r.strip()]
    bad = [r for r in rows if r not in ROWS]
    if bad: print(f"--rows: unknown {', '.join(bad)}; one of {', '.join(ROWS)}", file=sys.stderr); return 2
    try: get_profile(a.profile)
    except ConfigError as e: print(f'--profile: {e}', file=sys.stderr); return 2
    if a.seed < 0: print(f'--seed: must be an integer >= 0 (got {a.seed})', file=sys.stderr); return 2

    exp = setup_experiment(NAME, a.profile, seed=a.seed)
    data = experiment_data(exp); ds = data[0]
    classes = top_classes(ds, 24)
    base_ck = upstream(exp, BASELINE, FRAME_BASELINE,
                       lambda: run_variant(exp, FRAME_BASELINE, baseline_config(exp, classes, a.seed), data))
    base = find_variant(a.profile, BASELINE, FRAME_BASELINE, seed=a.seed)[0] or json.loads(
        (exp.out_dir/f'{FRAME_BASELINE}.metrics.json').read_text())
    pairs = scored_pairs(classes)
    table = {'ported frame baseline': dict(metrics=base, probe=None, ck=base_ck, what='the port: no ConvLSTM, not trained further')}
    for row in rows:
        m, ck = (find_variant(a.profile, RECURRENT, recurrent_variant('late'), seed=a.seed) if row == 'study'
                 else (None, None))
        if m is None:
            cfg = row_config(exp, row, classes, a.seed, base_ck)
            t0 = time.time()
            m = run_variant(exp, row, cfg, data, label=ROWS[row][0], progress=False)
            ck = exp.out_dir/f'checkpoint_{row}.pt'
            print(f'{row}: {time.time() - t0:.0f} s', file=sys.stderr)
        pf = exp.out_dir/f'{row}.probe.json'
        old = json.loads(pf.read_text()) if pf.exists() else {}
        if old.get('checkpoint_mtime') == ck.stat().st_mtime_ns and old.get('how') == PROBE: probe = old['probe']
        elif a.no_probe or row.startswith('frame_more'): probe = None
        else:
            probe = checkpoint_probe(data, pairs[:1], ck, name='m')
            save_json(dict(probe=probe, checkpoint_mtime=ck.stat().st_mtime_ns, how=PROBE), pf, indent=1)
        table[row] = dict(metrics=m, probe=probe, ck=ck, what=ROWS[row][0])

    print(f'\nseed {a.seed}, profile {a.profile}; pairs: {pairs[:1]} probed\n')
    print('| row | what changes | pairs AP | pairs AP per class | best pair class AP | object-defined AP | top-24 | '
          'direction AUC: before / state / after | last loss | train s | GFLOPs/frame |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    out = {}
    for k, r in table.items():
        m = r['metrics']
        pc = m['per_class']                               # each class scored alone (a box once per class)
        best = max((pc['AP'][c] for c in pc['pairs']['classes'] if pc['AP'].get(c) is not None), default=None)
        auc = next(iter(r['probe'].values()))['auc'] if r['probe'] else {}
        f = lambda x: '–' if x is None else f'{x:.2f}'
        aucs = ' / '.join(f(auc.get(f'm: {n}')) for n in ('before ConvLSTM', 'ConvLSTM state', 'after ConvLSTM'))
        g = gflops_per_frame(r['ck'], exp.profile.input_size)
        out[k] = dict(pairs=100 * m['pairs']['mAP'], pairs_per_class=100 * pc['pairs']['mAP'], object_defined=100 * m['object_defined']['mAP'],
                      top24=100 * m['top24']['mAP'], auc=auc, train_seconds=m['train_seconds'], gflops_per_frame=g,
                      last_loss=m['last_loss'], best_pair_class=None if best is None else 100 * best)
        print(f"| {k} | {r['what']} | {100 * m['pairs']['mAP']:.1f} | {100 * pc['pairs']['mAP']:.1f} | {'–' if best is None else f'{100 * best:.1f}'} "
              f"| {100 * m['object_defined']['mAP']:.1f} | {100 * m['top24']['mAP']:.1f} | {aucs} | {m['last_loss']:.3f} "
              f"| {m['train_seconds']:.0f} | {g:.3f} |")
    save_json(out, exp.out_dir/'table.json', indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
