"""Model loading: registered offline models, local folders, hub ids; family adapters."""

from probe.models.families import FamilyAdapter as FamilyAdapter
from probe.models.families import HeadGeometry as HeadGeometry
from probe.models.families import family_of as family_of
from probe.models.families import register_family as register_family
from probe.models.loading import LoadedModel as LoadedModel
from probe.models.loading import ModelNotFoundError as ModelNotFoundError
from probe.models.loading import ModelSource as ModelSource
from probe.models.loading import load_model as load_model
from probe.models.loading import register_model as register_model
from probe.models.loading import registered_models as registered_models
from probe.models.offline import DEFAULT_MODEL as DEFAULT_MODEL
from probe.models import synth_llava as synth_llava  # registers synth-llava
