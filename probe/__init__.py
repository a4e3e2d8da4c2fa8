"""headscope's probe package: load models, capture attention, edit it.

Example:
    >>> from probe import load_model, capture, CaptureConfig
    >>> from probe.edits import apply_edits, act_calibration
    >>> model = load_model("smollm2-135m")
    >>> record = capture(model, "When Mary and John went to the store, John gave a drink to")
    >>> with apply_edits(model, [act_calibration()]):
    ...     calibrated = capture(model, "When Mary and John went to the store, John gave a drink to")
"""

from probe.capture import AttentionRecord as AttentionRecord
from probe.capture import CaptureConfig as CaptureConfig
from probe.capture import InputError as InputError
from probe.capture import capture as capture
from probe.models import DEFAULT_MODEL as DEFAULT_MODEL
from probe.models import LoadedModel as LoadedModel
from probe.models import ModelNotFoundError as ModelNotFoundError
from probe.models import load_model as load_model
