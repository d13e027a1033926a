"""The model zoo: specs (``SOURCE:NAME@WEIGHTS``), loading, layers, preprocessing.

>>> from cortexzoo.zoo import load_model
>>> m = load_model("torchvision:resnet18@random")   # doctest: +SKIP
>>> m.layers[:4], m.preprocess.input_size             # doctest: +SKIP
(['conv1', 'bn1', 'relu', 'maxpool'], 224)
"""

from cortexzoo.zoo.curated import default_zoo
from cortexzoo.zoo.layers import LayerEnumerationError, enumerate_layers
from cortexzoo.zoo.preprocess import PreprocessConfig, PreprocessError
from cortexzoo.zoo.custom import CustomModel, register_model
from cortexzoo.zoo.registry import (
    LoadedModel,
    ModelEntry,
    at_input_size,
    count_layers,
    describe_model,
    list_models,
    load_model,
    relative_depths,
)
from cortexzoo.zoo.spec import ModelSpec, SpecError, parse_spec, read_spec_list
from cortexzoo.zoo.weights import (
    WeightsFileError,
    WeightsUnavailableError,
    weights_available,
)

__all__ = [
    "ModelSpec",
    "SpecError",
    "parse_spec",
    "describe_model",
    "read_spec_list",
    "LoadedModel",
    "ModelEntry",
    "PreprocessConfig",
    "PreprocessError",
    "load_model",
    "list_models",
    "count_layers",
    "default_zoo",
    "weights_available",
    "WeightsUnavailableError",
    "WeightsFileError",
    "enumerate_layers",
    "LayerEnumerationError",
    "relative_depths",
    "register_model",
    "CustomModel",
    "at_input_size",
]
