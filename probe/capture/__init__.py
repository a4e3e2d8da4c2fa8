"""Capture attention: full patterns on short inputs, reduced statistics on long ones."""

from probe.capture.api import capture as capture
from probe.capture.api import capture_ids as capture_ids
from probe.capture.config import CaptureConfig as CaptureConfig
from probe.capture.hf import recording as recording
from probe.capture.image_heads import ImageHeadOutputs as ImageHeadOutputs
from probe.capture.image_heads import image_head_outputs as image_head_outputs
from probe.capture.inputs import InputError as InputError
from probe.capture.record import AttentionRecord as AttentionRecord
