import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Tests never write into the user's runs/ or data/: every test session gets its own scratch folders.
os.environ.setdefault('MPLBACKEND', 'Agg')
