"""Build the documentation site into `_docs/` (`make docs`).

nbdev processes the notebooks into `_proc/` (show_doc rendered, hidden cells dropped, names linked); Quarto then
renders the site, as `nbdev_docs` does. Unlike `nbdev_docs`, no test cell runs: only the cells show_doc needs
(exported cells, cells of imports only, show_doc calls), so the chapters' slow and GPU cells are never executed.
Where Quarto is not installed (PyPI's quarto-cli is a source package that downloads the Quarto binary from GitHub
while it builds), the processed notebooks are rendered with nbconvert into the same layout instead.
"""
import ast, html, os, re, shutil, subprocess, sys, time
from pathlib import Path

import nbformat, yaml
import nbdev.processors as procs
from nbdev.config import get_config
from nbdev.doclinks import _build_modidx, _nbpath2html
from nbdev.quarto import nbdev_sidebar, refresh_quarto_yml
from nbdev.serve import proc_nbs

_SHOW = {'export', 'exports', 'exporti', 'exec_doc'}


def docs_cell(cell):
    "Does `cell` run to render the docs? Exported cells, cells of imports only and show_doc calls; no test cell."
    if cell.cell_type != 'code' or not cell.source or procs.cell_lang(cell) != 'python': return False
    if cell.directives_.get('eval:', [''])[0].lower() == 'false': return False
    if cell.directives_.keys() & _SHOW: return True
    trees = cell.parsed_()
    if not trees: return False
    return all(isinstance(t, (ast.Import, ast.ImportFrom)) for t in trees) or bool(procs._show_docs(trees))


def find_quarto():
    "The `quarto` executable on PATH or in this environment's bin folder, else None."
    here = Path(sys.executable).parent / 'quarto'
    return shutil.which('quarto') or (str(here) if here.exists() else None)


def process(cfg):
    "nbdev's preprocessing (`_quarto.yml`, `nbdev.yml`, sidebar, `_proc/`) with `docs_cell` as the rule for what runs."
    refresh_quarto_yml()
    _build_modidx()
    nbdev_sidebar.__wrapped__(path=cfg.nbs_path)
    procs._do_eval = docs_cell                  # nbdev's rule also runs cells mixing imports and tests
    return proc_nbs(cfg.nbs_path, n_workers=0)   # in this process, so that the rule above applies


def render_quarto(quarto, cache, cfg):
    subprocess.run([quarto, 'render', '--no-cache'], cwd=cache, check=True)
    shutil.rmtree(cfg.doc_path, ignore_errors=True)
    shutil.move(cache / cfg.doc_path.name, cfg.doc_path)


def _frontmatter(nb):
    "Pop the YAML frontmatter (a raw cell nbdev writes first) from `nb`; return it as a dict."
    for i, c in enumerate(nb.cells):
        if c.cell_type == 'raw' and c.source.startswith('---'):
            nb.cells.pop(i)
            return yaml.safe_load(c.source.strip().strip('-')) or {}
    return {}


_CSS = """body{max-width:1100px;margin:0 auto;display:flex;gap:2em;font-family:system-ui,sans-serif}
nav{min-width:13em;font-size:.9em;position:sticky;top:0;align-self:flex-start;max-height:100vh;overflow:auto}
nav a{display:block;padding:.15em 0}main{flex:1;min-width:0}"""


def _page(title, nav, body, up):
    return (f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f'<style>{_CSS}</style></head><body><nav>{nav.replace("HREF:", up)}</nav><main>{body}</main></body></html>')


def render_nbconvert(cache, cfg):
    "Render every processed notebook (and README.md as the index) into `doc_path` with nbconvert."
    from nbconvert import HTMLExporter
    out = cfg.doc_path
    shutil.rmtree(out, ignore_errors=True)
    pages = []
    for src in sorted(cache.rglob('*.ipynb')):
        nb = nbformat.read(src, as_version=4)
        fm = _frontmatter(nb)
        rel = src.relative_to(cache)
        dst = rel.with_name(fm.get('output-file') or _nbpath2html(rel).name)
        head = f"# {fm.get('title', rel.stem)}\n\n" + (f"> {fm['description']}\n" if fm.get('description') else '')
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(head))
        pages.append((dst, fm.get('title', rel.stem), nb))
    nav = '<a href="HREF:index.html"><b>restaurant_actions</b></a>' + ''.join(
        f'<a href="HREF:{d.as_posix()}">{html.escape(t)}</a>' for d, t, _ in pages)
    site = f"{cfg.doc_host}{cfg.doc_baseurl}".rstrip('/') + '/'
    exporter = HTMLExporter(template_name='basic')
    readme = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(
        (cfg.config_path / 'README.md').read_text(encoding='utf-8'))])
    for dst, title, nb in [(Path('index.html'), cfg.title, readme)] + pages:
        up = '../' * (len(dst.parts) - 1)
        body, _ = exporter.from_notebook_node(nb)
        body = body.replace(site, up)           # links between chapters stay inside the local site
        body = re.sub(r'(<h[1-6] id=")([^"]+)"', lambda m: m[1] + m[2].lower() + '"', body)   # Quarto's anchors
        (out / dst).parent.mkdir(parents=True, exist_ok=True)
        (out / dst).write_text(_page(title, nav, body, up), encoding='utf-8')
    return len(pages) + 1


def main():
    t0 = time.time()
    cfg = get_config()
    os.chdir(cfg.config_path)
    cache = process(cfg)
    quarto = find_quarto()
    if quarto: render_quarto(quarto, cache, cfg)
    else:
        print('make docs: Quarto not found (quarto-cli from PyPI needs GitHub while it installs); '
              'rendering the processed notebooks with nbconvert')
        render_nbconvert(cache, cfg)
    n = len(list(cfg.doc_path.rglob('*.html')))
    print(f'make docs: {n} pages in {cfg.doc_path}/ ({"quarto" if quarto else "nbconvert"}, {time.time() - t0:.0f} s); '
          f'open {cfg.doc_path / "index.html"}')


if __name__ == '__main__': main()
