"""The exported package must be exactly what nbdev_export makes of the notebooks, and notebooks must be clean."""
import json, shutil
from pathlib import Path

from nbdev.clean import clean_nb
from nbdev.config import get_config
from nbdev.export import nb_export

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'
PKG = ROOT/'restaurant_actions'


def test_package_matches_notebooks(tmp_path):
    # export a copy laid out like the project (tmp/nbs, tmp/restaurant_actions), so the relative source paths in
    # the module headers and the relative imports come out exactly as nbdev_export writes them
    (tmp_path/'nbs').mkdir()
    for nb in sorted(NBS.glob('*.ipynb')): shutil.copy(nb, tmp_path/'nbs'/nb.name)
    out = tmp_path/PKG.name
    for nb in sorted((tmp_path/'nbs').glob('*.ipynb')): nb_export(nb, lib_path=out)
    made = {p.relative_to(out): p.read_text() for p in out.rglob('*.py') if p.name != '__init__.py'}
    have = {p.relative_to(PKG): p.read_text() for p in PKG.rglob('*.py')
            if p.name not in ('__init__.py', '_modidx.py') and '__pycache__' not in p.parts}
    assert made, 'no module was exported: are the #| default_exp cells there?'
    stale = sorted(str(k) for k in made.keys() | have.keys() if made.get(k) != have.get(k))
    assert not stale, f'restaurant_actions/ is out of sync with nbs/ for {stale}: run `make sync` and commit'


def test_notebooks_are_clean():
    cfg = get_config(path=ROOT)
    dirty = []
    for nb in sorted(NBS.rglob('*.ipynb')):
        if '.ipynb_checkpoints' in nb.parts: continue
        raw = nb.read_text()
        d = json.loads(raw)
        clean_nb(d, clear_all=cfg.clear_all, allowed_metadata_keys=cfg.get('allowed_metadata_keys', '').split(),
                 allowed_cell_metadata_keys=cfg.get('allowed_cell_metadata_keys', '').split(), clean_ids=cfg.clean_ids)
        if d != json.loads(raw): dirty.append(str(nb.relative_to(ROOT)))
    assert not dirty, f'notebooks not cleaned: {dirty}; run `make sync` (nbdev_clean) and commit'
