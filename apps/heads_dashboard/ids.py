"""Component ids and shared styles of the page (one place, so layout, views, callbacks and browser
tests agree; no imports, so every view module can use them without a cycle)."""

from __future__ import annotations

PANEL = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "10px", "margin": "6px", "background": "#fff"}
MESSAGE = {"color": "#b00020", "minHeight": "1.2em", "margin": "4px 0"}
ROW = {"display": "flex", "flexWrap": "wrap", "alignItems": "flex-start"}
PROGRESS = {"color": "#555", "minHeight": "1.2em", "margin": "4px 0", "fontStyle": "italic"}
WARNING = {"color": "#8a5a00", "minHeight": "1.2em", "margin": "4px 0"}


class ID:
    """Component ids (one place, so callbacks and browser tests agree)."""

    SESSION = "session"
    MODEL_READY = "model-ready"
    MODEL_STATUS = "model-status"
    MODEL_POLL = "model-poll"
    PROMPT = "prompt"
    EXAMPLES = "examples"
    RECORD_PROMPT = "record-prompt"
    RUN = "run"
    CANCEL = "cancel"
    PROGRESS = "progress"
    CAPTURE_REQUEST = "capture-request"
    PROMPT_MESSAGE = "prompt-message"
    PROMPT_INFO = "prompt-info"
    METRIC = "metric"
    GRID = "grid"
    LAYER = "layer"
    HEAD = "head"
    HEAD_MESSAGE = "head-message"
    HEAD_GRAPH = "head-graph"
    HEAD_TOKENS = "head-tokens"
    EDIT_ACT = "edit-act"
    EDIT_ACT_HEADS = "edit-act-heads"
    EDIT_ACT_FILE = "edit-act-file"
    EDIT_ACT_NOTE = "edit-act-note"
    EDIT_HEADS = "edit-heads"
    EDIT_FACTOR = "edit-factor"
    EDIT_APPLY = "edit-apply"
    EDIT_MESSAGE = "edit-message"
    EDIT_WARNING = "edit-warning"
    EDIT_CANCEL = "edit-cancel"
    EDIT_PROGRESS = "edit-progress"
    EDIT_REQUEST = "edit-request"
    EDIT_SESSION = "edit-session"
    EDIT_NEXT = "edit-next"
    EDIT_COMPARE = "edit-compare"

    # head panel display (views.display)
    VIEW = "view"
    SCALE = "scale"
    HIDE_FIRST = "hide-first"
    # token strip (views.tokens)
    TOKEN_PICK = "token-pick"  # written by assets/token_strip.js: {"index": i, "at": ms} of a clicked token
    TOKEN_CLICK = "token-click"
    STRIP_HOVER = "strip-hover"  # the selected head's rows/columns for hover shading (views.tokens.hover_values)
    SHADE = "shade"
    QK = "qk"
    QK_INFO = "qk-info"
    # target and foil (views.scores)
    TARGET = "target"
    FOIL = "foil"
    LOGIT_DIFF = "logit-diff"
    SCORES_RUN = "scores-run"
    SCORES_CANCEL = "scores-cancel"
    SCORES_PROGRESS = "scores-progress"
    SCORES_MESSAGE = "scores-message"
    SCORES_REQUEST = "scores-request"
    SCORES = "scores"
    ABLATION_MODE = "ablation-mode"
    # long-input window (views.window)
    WINDOW_RANGE = "window-range"
    WINDOW_RUN = "window-run"
    WINDOW_CANCEL = "window-cancel"
    WINDOW_PROGRESS = "window-progress"
    WINDOW_MESSAGE = "window-message"
    WINDOW_REQUEST = "window-request"
    WINDOW = "window"
    WINDOW_GRAPH = "window-graph"
    # data sets (views.dataset)
    DATASET_UPLOAD = "dataset-upload"
    DATASET_EXAMPLE = "dataset-example"
    DATASET_FILE = "dataset-file"
    DATASET_CHOICE = "dataset-choice"
    DATASET_INFO = "dataset-info"
    DATASET_QUERY = "dataset-query"
    DATASET_KEY = "dataset-key"
    DATASET_METRIC = "dataset-metric"
    DATASET_RUN = "dataset-run"
    DATASET_CANCEL = "dataset-cancel"
    DATASET_PROGRESS = "dataset-progress"
    DATASET_MESSAGE = "dataset-message"
    DATASET_REQUEST = "dataset-request"
    DATASET = "dataset"
    DATASET_GRAPH = "dataset-graph"
    # page state in the URL (views.url)
    URL = "url"
    URL_RESTORED = "url-restored"
