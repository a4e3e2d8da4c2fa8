"""circuitsvis views of attention records, for notebooks.

Example:
    >>> from probe import load_model, capture, CaptureConfig
    >>> from apps.heads_dashboard.notebook import show_record
    >>> record = capture(load_model("smollm2-135m"), "The capital of France is", CaptureConfig(mode="pattern"))
    >>> show_record(record, layer=5)             # every head's pattern, interactive
"""

from __future__ import annotations

from circuitsvis.attention import attention_patterns
from circuitsvis.tokens import colored_tokens
from circuitsvis.utils.render import RenderedHTML

from probe.capture.record import AttentionRecord


def show_record(record: AttentionRecord, layer: int, prompt: int = 0) -> RenderedHTML:
    """One layer of one prompt as circuitsvis HTML (displays itself in Jupyter).

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
        return attention_patterns(tokens=tokens, attention=record.pattern(layer, prompt).float())
    received = record.stat(layer, "received_mean", prompt).float().amax(dim=0)
    return colored_tokens(tokens=tokens, values=received)
