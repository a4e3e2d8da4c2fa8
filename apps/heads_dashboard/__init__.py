"""The heads dashboard: a Dash app to look at and edit what attention heads do.

Context:
    ``headscope dashboard`` serves one page: a prompt box, a layers x heads heatmap of a chosen
    metric, the pattern of the head you click (or, for long inputs, attention received per key
    and entropy per query), an edits panel comparing the model before and after an edit, and
    analysis panels (the reasoning rhythm of one response).

    The modules split along responsibilities:

    - :mod:`.settings`: frozen dataclasses for the app's settings and the UI's edit choices;
    - :mod:`.metrics`: the registry of per-head metrics the heatmap can show;
    - :mod:`.state`: the model loaded on a background thread and the capture cache;
    - :mod:`.workbench`: turns a (prompt, edits) pair into records and head views;
    - :mod:`.figures`: pure plotly figure builders (unit-tested without a server);
    - :mod:`.layout`, :mod:`.callbacks`, :mod:`.app`: the Dash page and its wiring;
    - :mod:`.panels`: one module per analysis, each a section of the page with its callbacks
      (:mod:`.panels.rhythm`: the reasoning rhythm of one response);
    - :mod:`.notebook`: circuitsvis views of the same records, for notebooks;
    - :mod:`.cli`: the ``dashboard`` subcommand.
"""
