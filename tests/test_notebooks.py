"""Every notebook in nbs/ is a test: run it top to bottom with nbdev's runner (one pytest test per notebook).

Cells flagged with settings.ini's `tst_flags` (slow, gpu) are skipped unless named in
$RESTAURANT_ACTIONS_TEST_FLAGS (e.g. "slow" or "slow gpu")."""
import os
from pathlib import Path

import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_nb  # renamed so pytest does not collect it

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT/'nbs'


def notebooks():
    out = []
    for p in sorted(NBS.rglob('*.ipynb')):
        rel = p.relative_to(NBS)
        if any(part.startswith(('.', '_')) for part in rel.parts): continue
        if (p.parent/'.notest').exists(): continue
        out.append(p)
    return out


@pytest.mark.parametrize('nb', notebooks(), ids=lambda p: str(p.relative_to(NBS)))
def test_notebook(nb, tmp_path, monkeypatch):
    monkeypatch.setenv('RESTAURANT_ACTIONS_RUNS', str(tmp_path/'runs'))
    force = os.environ.get('RESTAURANT_ACTIONS_TEST_FLAGS', '').split()
    skip = [f for f in get_config(path=ROOT).tst_flags.split() if f not in force]
    ok, secs = run_nb(nb, skip_flags=skip, force_flags=force, basepath=ROOT)
    assert ok, f'{nb.relative_to(ROOT)} failed (traceback above)'
