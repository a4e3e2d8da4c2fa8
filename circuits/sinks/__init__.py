"""Attention sinks: detection over inputs and data sets, ACT calibration head search, reports.

Example:
    >>> from probe import load_model
    >>> from circuits.sinks import sink_report
    >>> report = sink_report(load_model("smollm2-135m"), ["The capital of France is Paris."])
    >>> report.first_token_head_share
"""

from circuits.sinks.detection import SinkReport as SinkReport
from circuits.sinks.detection import sink_report as sink_report
from circuits.sinks.massive import massive_activations as massive_activations
from circuits.sinks.search import SearchConfig as SearchConfig
from circuits.sinks.search import search_heads as search_heads
from circuits.sinks.token_types import token_type as token_type
