"""Figures and a one-file HTML report of the reasoning rhythm: WAAD, FAI, anchors, couplings.

Context:
    Li et al. (arXiv 2510.13554; methods dossier section d) describe two visual checks: WAAD
    draws a *sawtooth* (it climbs inside a chunk of locally coherent tokens and drops at a
    chunk's start, where the model looks far back), and FAI marks *anchors*, tokens that later
    tokens keep attending to (key intermediate results). This module draws both per trace, with
    the peaks of :mod:`circuits.rhythm.peaks` marked, shows the response text with each token's
    background coloured by its FAI, and tabulates the three couplings next to the paper's Table
    2. :func:`write_report` puts everything in ONE self-contained HTML file: plotly.js is
    embedded (``include_plotlyjs=True``, once), so it opens offline.

Example:
    >>> from circuits.rhythm.report import waad_figure, anchor_html, write_report
    >>> waad_figure(rhythms[0]).show()
    >>> write_report(rhythms, rhythm_couplings(rhythms, allow_missing=True), "rhythm.html")
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from circuits.rhythm.anchors import Placement
from circuits.rhythm.metrics import TokenRhythm
from circuits.rhythm.peaks import COUPLINGS, PAPER_COUPLINGS, Coupling, PeakRule, as_array, fai_peaks, waad_peaks
from probe.files import write_text_atomic

WAAD_COLOUR, FAI_COLOUR, RECEIVER_COLOUR, PEAK_COLOUR = "#1f77b4", "#d62728", "#9467bd", "#111111"
ANCHOR_RGB = (214, 39, 40)
"""Anchor backgrounds: this red, opaque in proportion to the token's FAI within its trace's range."""


def shown_token(token: str) -> str:
    """A token as a hover or tick label: line breaks and tabs made visible, empty tokens marked."""
    shown = token.replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return shown if shown else "∅"


def _finite_or_none(values) -> list[float | None]:
    """Plotly-ready values: NaN as None (a gap in the line)."""
    return [float(v) if math.isfinite(v) else None for v in as_array(values)]


def _signal_figure(rhythm: TokenRhythm, traces: Sequence[tuple[str, np.ndarray, np.ndarray, str, str]],
                   y_title: str, title: str) -> go.Figure:
    """Lines over the response's tokens with their peaks as markers.

    Args:
        rhythm: the trace (its tokens label the hover text).
        traces: per line, ``(name, values, peaks, colour, dash)``.
        y_title: the y axis's title.
        title: the figure's title.
    """
    tokens = [shown_token(t) for t in rhythm.tokens]
    x = list(range(len(tokens)))
    fig = go.Figure()
    for name, values, peaks, colour, dash in traces:
        y = _finite_or_none(values)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, line=dict(color=colour, width=1.5, dash=dash),
                                 customdata=tokens, hovertemplate="%{x}: %{customdata}<br>%{y:.4f}<extra>"
                                 + name + "</extra>"))
        fig.add_trace(go.Scatter(x=[int(p) for p in peaks], y=[y[p] for p in peaks], mode="markers",
                                 name=f"{name} peaks ({len(peaks)})", customdata=[tokens[p] for p in peaks],
                                 marker=dict(color=colour, size=8, symbol="triangle-up",
                                             line=dict(color=PEAK_COLOUR, width=1)),
                                 hovertemplate="peak at %{x}: %{customdata}<br>%{y:.4f}<extra></extra>"))
    fig.update_layout(title=dict(text=title, font=dict(size=14)), height=300, margin=dict(l=50, r=20, t=40, b=40),
                      xaxis=dict(title="response token"), yaxis=dict(title=y_title),
                      legend=dict(orientation="h", y=1.02, yanchor="bottom", x=1, xanchor="right"))
    return fig


def waad_figure(rhythm: TokenRhythm, rule: PeakRule = PeakRule(), title: str = "WAAD") -> go.Figure:
    """WAAD over the response's tokens (the sawtooth), WAAD peaks marked."""
    line = ("WAAD", as_array(rhythm.waad), waad_peaks(rhythm.waad, rule), WAAD_COLOUR, "solid")
    return _signal_figure(rhythm, [line], "WAAD (tokens)", title)


def fai_figure(rhythm: TokenRhythm, rule: PeakRule = PeakRule(), title: str = "FAI") -> go.Figure:
    """FAI of the global heads (solid) and of the receiver heads (dotted) over the response's
    tokens, each with its peaks; the last ``band_lo`` tokens have no band (a gap)."""
    return _signal_figure(rhythm, [
        ("FAI", as_array(rhythm.fai), fai_peaks(rhythm.fai, rule), FAI_COLOUR, "solid"),
        ("receiver FAI", as_array(rhythm.receiver_fai), fai_peaks(rhythm.receiver_fai, rule), RECEIVER_COLOUR, "dot"),
    ], "FAI (mean attention received)", title)


@dataclass(frozen=True)
class AnchorToken:
    """One response token as the anchors view draws it (the data behind :func:`anchor_html`).

    Attributes:
        text: the token as decoded.
        alpha: background opacity, ``(FAI - min) / (max - min)`` over the trace's finite FAI
            (0 when FAI is constant); None where FAI is NaN (no band: the token is drawn grey).
        anchor: an FAI peak (framed).
        chunk_start: a WAAD peak (underlined in blue).
        hover: the token's index, FAI, WAAD and entropy, for a tooltip.
    """

    text: str
    alpha: float | None
    anchor: bool
    chunk_start: bool
    hover: str

    @property
    def shown(self) -> str:
        """The text with each line break marked by ``↵`` (it stays a line break too)."""
        return self.text.replace("\n", "↵\n")

    def css(self) -> dict[str, str]:
        """CSS properties (hyphenated names) of the token's span."""
        if self.alpha is None:
            style = {"color": "#888"}
        else:
            style = {"background": f"rgba({', '.join(map(str, ANCHOR_RGB))}, {self.alpha:.2f})"}
        if self.anchor:
            style["outline"] = f"1.5px solid {PEAK_COLOUR}"
        if self.chunk_start:
            style["border-bottom"] = f"2px solid {WAAD_COLOUR}"
        return style


def anchor_tokens(rhythm: TokenRhythm, rule: PeakRule = PeakRule()) -> list[AnchorToken]:
    """Each response token with its FAI shade and peak marks (see :class:`AnchorToken`)."""
    fai, waad = as_array(rhythm.fai), as_array(rhythm.waad)
    entropy = as_array(rhythm.entropy) if rhythm.entropy is not None else np.full(len(fai), math.nan)
    finite = fai[np.isfinite(fai)]
    low, span = (float(finite.min()), float(np.ptp(finite))) if finite.size else (0.0, 0.0)
    anchors, chunks = set(fai_peaks(fai, rule).tolist()), set(waad_peaks(waad, rule).tolist())
    marks = []
    for i, token in enumerate(rhythm.tokens):
        alpha = None
        if math.isfinite(fai[i]):
            alpha = float((fai[i] - low) / span) if span > 0 else 0.0
        marks.append(AnchorToken(text=token, alpha=alpha, anchor=i in anchors, chunk_start=i in chunks,
                                 hover=f"token {i}: FAI {fai[i]:.4g}, WAAD {waad[i]:.3g}, entropy {entropy[i]:.3g}"))
    return marks


def anchor_html(rhythm: TokenRhythm, rule: PeakRule = PeakRule()) -> str:
    """The response as HTML spans, each token's background red in proportion to its FAI.

    Opacity is ``(FAI - min) / (max - min)`` over the trace's finite FAI; FAI peaks are framed;
    WAAD peaks are underlined in blue; tokens without a band (NaN FAI) are grey. Hovering a token
    shows its FAI, WAAD and entropy. (:func:`anchor_tokens` gives the same as data.)
    """
    spans = []
    for token in anchor_tokens(rhythm, rule):
        style = "; ".join(f"{name}: {value}" for name, value in token.css().items())
        spans.append(f'<span title="{html.escape(token.hover)}" style="{style}">'
                     f"{html.escape(token.shown)}</span>")
    return ('<div class="rhythm-anchors" style="white-space: pre-wrap; font-family: monospace; line-height: 1.6">'
            + "".join(spans) + "</div>")


# --- couplings -----------------------------------------------------------------------------


def _share(value: float) -> str:
    return f"{100 * value:.2f}%" if math.isfinite(value) else "n/a"


def _entropy(value: float) -> str:
    return f"{value:.4f}" if math.isfinite(value) else "n/a"


def _lift(value: float) -> str:
    return f"{100 * value:+.2f}%" if math.isfinite(value) else "n/a"


VALUE_FORMATS: dict[str, Callable[[float], str]] = {
    "entropy_at_waad_peaks": _entropy,
    "receiver_fai_cooccurrence": _share,
    "fai_follows_waad": _share,
}
"""How each coupling's observed and random values read: entropy in nats, the others as shares."""

TABLE_COLUMNS = ("coupling", "observed", "random", "lift [95% interval]", "peaks", "paper observed",
                 "paper random", "paper lift")


def coupling_rows(couplings: Mapping[str, Coupling]) -> list[tuple[str, ...]]:
    """One row of :data:`TABLE_COLUMNS` per coupling of the paper, ``no peaks`` where one is missing."""
    rows = []
    for name in COUPLINGS:
        paper, fmt = PAPER_COUPLINGS[name], VALUE_FORMATS[name]
        published = (fmt(paper.observed), fmt(paper.random), _lift(paper.lift))
        measured = couplings.get(name)
        if measured is None:
            rows.append((paper.label, "no peaks", "", "", "0", *published))
            continue
        lift = measured.lift
        rows.append((paper.label, fmt(measured.observed), fmt(measured.random),
                     f"{_lift(lift.value)} [{_lift(lift.low)}, {_lift(lift.high)}]",
                     f"{measured.n_peaks} in {measured.n_traces} traces", *published))
    return rows


def format_couplings(couplings: Mapping[str, Coupling]) -> str:
    """The couplings as a plain-text table next to the paper's figures."""
    rows = [TABLE_COLUMNS, *coupling_rows(couplings)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def couplings_html(couplings: Mapping[str, Coupling]) -> str:
    """The couplings as an HTML table next to the paper's figures."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in TABLE_COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                   for row in coupling_rows(couplings))
    return f'<table class="rhythm-couplings"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


# --- the report ----------------------------------------------------------------------------

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222 }
table.rhythm-couplings { border-collapse: collapse; margin: 1em 0 }
table.rhythm-couplings th, table.rhythm-couplings td { border: 1px solid #ccc; padding: 4px 8px; text-align: right }
table.rhythm-couplings td:first-child, table.rhythm-couplings th:first-child { text-align: left }
section.trace { border-top: 1px solid #ddd; margin-top: 2em }
"""

INTRO = """<p>WAAD (windowed average attention distance, W tokens) of the local heads draws a sawtooth over a
response: it drops where a new chunk starts to look far back. FAI (future attention influence) of the global
heads marks anchors: tokens that later tokens keep attending to. Triangles mark peaks (strict local maxima with a
minimum prominence); in the text, red backgrounds follow FAI, framed tokens are FAI peaks and blue underlines
WAAD peaks. Lifts compare the observed value with the same peaks shuffled; the interval is a bootstrap over
traces. The paper's figures are Qwen3-4B-Base's on 70 GSM8K traces (Li et al., arXiv 2510.13554, Table 2).</p>"""


def placements_html(placements: Sequence[Placement]) -> str:
    """Where the peaks fall (:mod:`circuits.rhythm.anchors`) as an HTML table."""
    head = "".join(f"<th>{c}</th>" for c in ("signal", "token class", "peaks", "share of peaks",
                                             "share of tokens", "lift [95% interval]"))
    body = "".join(f"<tr><td>{p.signal.upper()}</td><td>{html.escape(p.token_class)}</td><td>{p.n_peaks}</td>"
                   f"<td>{_share(p.share)}</td><td>{_share(p.base)}</td>"
                   f"<td>{_lift(p.lift.value)} [{_lift(p.lift.low)}, {_lift(p.lift.high)}]</td></tr>"
                   for p in placements)
    return f'<table class="rhythm-couplings"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def write_report(rhythms: Sequence[TokenRhythm], couplings: Mapping[str, Coupling], path: str | Path, *,
                 labels: Sequence[str] | None = None, rule: PeakRule = PeakRule(),
                 title: str = "Reasoning rhythm", placements: Sequence[Placement] = ()) -> Path:
    """Write ONE self-contained HTML file: the couplings table, then per trace the WAAD and FAI
    figures and the anchors on its text. plotly.js is embedded once, so the file opens offline.

    Args:
        rhythms: the traces' metrics.
        couplings: :func:`circuits.rhythm.peaks.rhythm_couplings`' result (missing couplings
            show as "no peaks").
        path: the HTML file, written atomically.
        labels: one heading per trace (default ``trace N``).
        rule: the peak rule the couplings used.
        title: the page's title.
        placements: where the peaks fall (:func:`circuits.rhythm.anchors.all_placements`), shown
            after the couplings when given.

    Returns:
        ``path``.
    """
    if not rhythms:
        raise ValueError("a report needs at least one trace")
    labels = list(labels) if labels is not None else [f"trace {i}" for i in range(len(rhythms))]
    if len(labels) != len(rhythms):
        raise ValueError(f"{len(labels)} labels for {len(rhythms)} traces; give one per trace")
    parts = [f"<h1>{html.escape(title)}</h1>", INTRO, couplings_html(couplings)]
    if placements:
        parts += ["<h2>Where the peaks fall</h2>", placements_html(placements)]
    for index, (rhythm, label) in enumerate(zip(rhythms, labels)):
        figures = (waad_figure(rhythm, rule, "WAAD (local heads)"), fai_figure(rhythm, rule, "FAI (global heads)"))
        plots = [fig.to_html(full_html=False, include_plotlyjs=index == 0 and n == 0, config={"displaylogo": False})
                 for n, fig in enumerate(figures)]
        parts.append(f'<section class="trace"><h2>{html.escape(label)}</h2>{"".join(plots)}'
                     f"{anchor_html(rhythm, rule)}</section>")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    return write_text_atomic(path, page)
