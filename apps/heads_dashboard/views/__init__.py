"""The page's feature views (issue 20), one module each: layout pieces and callbacks together.

- :mod:`.display`: how the selected head is drawn (one pattern, all heads of its layer, after
  minus before), linear or log scale, the first token hidden, the guarded long-input summary.
- :mod:`.tokens`: the clickable token strip (query and key for the "attention q → k" heatmap
  metric) and its shading (attention received, or from / to a token of the selected head).
- :mod:`.scores`: target and foil tokens: the logit difference before/after the edits, and the
  direct-logit-attribution and ablation-effect head scores (a background job).
- :mod:`.grid_metrics`: the heatmap metrics that are not per-record registry metrics.
- :mod:`.window`: the windowed full pattern of a long input (a background job).
- :mod:`.dataset`: a prompt file captured as one record, metrics averaged over its prompts.
- :mod:`.url`: the page state in the URL (restore on load, rewrite on change).

Each module's ``register_callbacks(app, workbench)`` wires it; :func:`.app.create_app` calls them.
"""
