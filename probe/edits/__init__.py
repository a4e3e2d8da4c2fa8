"""Training-free attention edits that compose and work during generation."""

from probe.attention.spec import SinkRule as SinkRule
from probe.edits.apply import apply_edits as apply_edits
from probe.edits.spec import BiasKeys as BiasKeys
from probe.edits.spec import BoostKeys as BoostKeys
from probe.edits.spec import ImageKeys as ImageKeys
from probe.edits.spec import ImagePatches as ImagePatches
from probe.edits.spec import Positions as Positions
from probe.edits.spec import ScaleHeads as ScaleHeads
from probe.edits.spec import ScaleKeys as ScaleKeys
from probe.edits.spec import Sinks as Sinks
from probe.edits.spec import act_calibration as act_calibration
