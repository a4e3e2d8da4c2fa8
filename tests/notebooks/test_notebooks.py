"""Every notebook runs top to bottom on the embedded default model (executed, not just parsed),
its saved outputs render offline (plotly.js and circuitsvis' bundle embedded, not fetched), and
the IOI notebook's ablations share forwards. Each notebook is executed once for all its tests."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import SHARED

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
# Code fetched by the saved outputs: <script src="http..."> and ES-module imports of a URL. plotly's
# HTML also names MathJax on a CDN (hard-wired in plotly's notebook renderer); it only typesets LaTeX
# labels, which these notebooks do not use, and a figure draws without it, so it is allowed.
SCRIPT_SRC = re.compile(r"""<script[^>]*\ssrc\s*=\s*["']?(https?:)?//[^"'\s>]+""", re.I)
URL_IMPORT = re.compile(r"""\b(?:import|from)\s*\(?\s*["'](?:https?:)?//[^"']+["']""")
ALLOWED = re.compile(r"mathjax", re.I)

# Cells run around the notebook's own (and removed before its outputs are checked): they count the
# forwards of causal LMs (every model.hf(...) and capture) through a global module hook.
COUNTER = "_headscope_test_forwards"
PROLOGUE = f"""\
import torch as _torch
{COUNTER} = [0]
def _headscope_test_count(module, args):
    if type(module).__name__.endswith("ForCausalLM"):
        {COUNTER}[0] += 1
_torch.nn.modules.module.register_module_forward_pre_hook(_headscope_test_count)
"""
EPILOGUE = f'print("forwards:", {COUNTER}[0])'


@dataclass
class Executed:
    name: str
    notebook: object
    forwards: int


@pytest.fixture(scope="module", params=NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def executed(request, tmp_path_factory) -> Executed:
    """The notebook after one execution (shared by the tests of this module)."""
    path = request.param
    notebook = nbformat.read(path, as_version=4)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(PROLOGUE))
    notebook.cells.append(nbformat.v4.new_code_cell(EPILOGUE))
    # No cell timeout: a slow or busy machine must not fail a notebook that is merely slow;
    # CI's job limit is the only limit.
    client = nbclient.NotebookClient(notebook, timeout=None, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path_factory.mktemp("nb"))}})
    env = dict(os.environ)
    if not env.get("HEADSCOPE_BBH_DIR") and (SHARED / "data" / "bbh").is_dir():
        env["HEADSCOPE_BBH_DIR"] = str(SHARED / "data" / "bbh")  # the sinks notebook's task, offline
    client.execute(cwd=str(path.parent), env=env)
    counted = notebook.cells.pop()
    notebook.cells.pop(0)
    forwards = int("".join(out.get("text", "") for out in counted.outputs).split("forwards:")[1])
    return Executed(path.name, notebook, forwards)


def _code_cells(notebook):
    return [cell for cell in notebook.cells if cell.cell_type == "code"]


def _output_text(notebook) -> str:
    """The text of every saved output of every code cell (HTML and other text mime types, streams)."""
    parts = []
    for cell in _code_cells(notebook):
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts += [value if isinstance(value, str) else json.dumps(value) for value in out.get("data", {}).values()]
    return "\n".join(parts)


def fetched_code(text: str) -> list[str]:
    """The URLs of the code that ``text`` (saved HTML) loads from the network, MathJax excepted."""
    found = [m.group(0) for pattern in (SCRIPT_SRC, URL_IMPORT) for m in pattern.finditer(text)]
    return [url for url in found if not ALLOWED.search(url)]


@pytest.mark.real_model
def test_notebook_runs_top_to_bottom(executed):
    cells = _code_cells(executed.notebook)
    errors = [out for cell in cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors
    assert any(cell.get("outputs") for cell in cells), "nothing was executed"


@pytest.mark.real_model
def test_saved_outputs_render_offline(executed):
    from plotly.io._utils import plotly_cdn_url
    from plotly.offline import get_plotlyjs_version

    text = _output_text(executed.notebook)
    sources = "\n".join(cell.source for cell in _code_cells(executed.notebook))
    if "fig.show()" in sources:
        # plotly.min.js opens with "plotly.js vX.Y.Z"; notebook_connected writes an import of the CDN copy instead.
        assert f"plotly.js v{get_plotlyjs_version()}" in text, "plotly.js is not embedded in the saved outputs"
        assert plotly_cdn_url().rstrip(".js") not in text
    if "show_record(" in sources:
        assert "var CircuitsVis=" in text, "the circuitsvis bundle is not inlined in the saved outputs"
    fetched = fetched_code(text)
    assert not fetched, f"saved outputs load code from the network (blank offline): {fetched[:3]}"


@pytest.mark.real_model
def test_ioi_ablations_share_forwards(executed):
    """69 ablations (30 layers, 36 heads, 3 scales of one head) in a few batched forwards, not one
    forward each (which took the notebook past a 900 s cell timeout on a busy 2-core machine)."""
    if executed.name != "ioi_heads.ipynb":
        pytest.skip("the IOI notebook's ablations")
    # clean, corrupted, the pattern capture, the clean hidden states, and ceil(69 / 10) + 1 ablation batches
    assert 4 <= executed.forwards <= 15, f"{executed.forwards} model forwards"


@pytest.mark.real_model
def test_rhythm_notebook_captures_each_batch_once(executed):
    """The rhythm notebook's model forwards: generation (one per new token, 160), one capture of all six
    traces (token entropy is read off that capture's hidden states), and the perturbation test's two
    batches of six trials (one forward ranking the alternatives, then 24 rollout steps each); not a
    capture per trace or a forward per trial and token."""
    if executed.name != "reasoning_rhythm.ipynb":
        pytest.skip("the rhythm notebook's forwards")
    assert executed.forwards <= 160 + 1 + 2 * (1 + 24), f"{executed.forwards} model forwards"


@pytest.mark.real_model
def test_discovery_notebook_batches_its_forwards(executed):
    """The circuits notebook's model forwards: behaviour (2 x 3 batches, one more for a wrong top token),
    patching of 270 heads on its items in two forwards of 135 copies (plus clean and corrupted), EAP (3),
    EAP-IG (2 + 5 steps), the SAE's two recordings, one pattern capture and four mean ablations (4 each);
    not a forward per head (which alone would be 270)."""
    if executed.name != "circuits_ioi.ipynb":
        pytest.skip("the circuits notebook's forwards")
    assert executed.forwards <= 60, f"{executed.forwards} model forwards"


@pytest.mark.real_model
def test_vlm_notebook_reports_each_method(executed):
    """The vision-language notebook (synth-llava on world scenes) prints what each section measured:
    the image tokens, VHD's ranking, the yes-rates of greedy, VHR, PAINT and their random controls, and
    where CARVE's contrast map peaks."""
    if executed.name != "vlm_heads.ipynb":
        pytest.skip("the vision-language notebook's sections")
    text = _output_text(executed.notebook)
    assert "64 image tokens" in text and "top 10 heads by VHD: L" in text
    for condition in ("greedy", "VHR", "VHR, random heads", "PAINT", "PAINT, random tokens"):
        assert f"{condition}: yes to the absent partner" in text, condition
    assert "peak of the contrast map at" in text and "with CARVE (original + refined image)" in text


def test_fetched_code_finds_the_cdn_loads_of_plotly_and_circuitsvis():
    """The pattern the notebook test relies on, on the HTML that notebook_connected and circuitsvis'
    CDN version write (fast, no execution)."""
    connected = '<script type="module">import "https://cdn.plot.ly/plotly-3.0.1.min"</script>'
    tagged = '<script charset="utf-8" src="https://cdn.plot.ly/plotly-3.0.1.min.js" integrity="x"></script>'
    unpkg = ('<script crossorigin type="module">\n'
             ' import { render, Hello } from "https://unpkg.com/circuitsvis@1.43.3/dist/cdn/esm.js";')
    for html in (connected, tagged, unpkg):
        assert fetched_code(html), html
    inline = '<script>/** plotly.js v3 */ var x = {topojsonURL: {dflt: "https://cdn.plot.ly/un/"}}</script>'
    mathjax = '<script src="https://cdnjs.cloudflare.com/ajax/libs/mathjax/3.2.2/es5/tex-svg.min.js"></script>'
    assert fetched_code(inline + mathjax) == []
