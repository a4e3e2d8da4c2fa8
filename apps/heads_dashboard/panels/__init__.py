"""Dashboard panels, one module per analysis.

Each module gives a ``panel()`` (its section of the page, ids prefixed with the panel's name) and
a ``register_callbacks(app, workbench)``; :func:`apps.heads_dashboard.app.create_app` adds both.

- :mod:`.rhythm`: the reasoning rhythm (WAAD, FAI, anchors) of one generated or pasted response.
- :mod:`.circuits`: a task's circuit by one discovery method (scores, graph with SAE code edges) and its ablation.
- :mod:`.vision`: a vision-language model's heads on one image (attention on the patch grid, mass on
  the image, VHD) and its caption before and after an edit; its own model, loaded on first use.
"""
