"""circuitsvis views of attention records, for notebooks.

Example:
    >>> from probe import load_model, capture, CaptureConfig
    >>> from apps.heads_dashboard.notebook import show_record
    >>> record = capture(load_model("smollm2-135m"), "The capital of France is", CaptureConfig(mode="pattern"))
    >>> show_record(record, layer=5)             # every head's pattern, interactive

The HTML inlines the circuitsvis bundle that the installed package ships (``dist/cdn/iife.js``,
about 1.3 MB), so a notebook saved with it renders offline; circuitsvis' own ``RenderedHTML``
imports its code from unpkg whenever the kernel is online.
"""

from __future__ import annotations

from circuitsvis.attention import attention_patterns
from circuitsvis.tokens import colored_tokens
from circuitsvis.utils.render import RenderedHTML

from probe.capture.record import AttentionRecord


class InlineHTML(RenderedHTML):
    """circuitsvis HTML that always displays its self-contained version (the bundle inlined).

    ``RenderedHTML`` shows the CDN version (``import ... from "https://unpkg.com/..."``) when the
    kernel is online, so a notebook executed and saved with network access shows nothing offline.
    """

    def _repr_html_(self) -> str:
        return self.local_src

    def __str__(self) -> str:
        return self.local_src


def _inline(html: RenderedHTML) -> InlineHTML:
    return InlineHTML(html.local_src, html.cdn_src)


def show_record(record: AttentionRecord, layer: int, prompt: int = 0) -> InlineHTML:
    """One layer of one prompt as self-contained circuitsvis HTML (displays itself in Jupyter).

    Pattern-mode records give ``attention_patterns`` (every head, tokens on both axes).
    Statistics-mode records (long inputs) have no patterns; they give the tokens coloured by
    the mean attention each receives (``received_mean``, largest over heads), the same data
    as the dashboard's summary view.

    Raises:
        KeyError: ``layer`` was not recorded.
        IndexError: ``prompt`` is not in the record.
    """
    if not 0 <= prompt < record.batch_size:
        raise IndexError(f"prompt {prompt} is not in the record ({record.batch_size} prompts)")
    tokens = record.tokens[prompt]
    if layer in record.patterns:
        return _inline(attention_patterns(tokens=tokens, attention=record.pattern(layer, prompt).float()))
    received = record.stat(layer, "received_mean", prompt).float().amax(dim=0)
    return _inline(colored_tokens(tokens=tokens, values=received))
