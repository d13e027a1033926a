"""Datasets: the dataset folder format (FORMAT.md), loading/writing/validation,
synthetic stimuli with planted neuroids, and converters for real recordings."""
from .allen import convert_allen
from .brainio import convert_brainio
from .cowley import convert_cowley_v4
from .dataset import (
    DatasetError,
    NeuralDataset,
    load_dataset,
    normalize_uri,
    validate_dataset,
    write_dataset,
)
from .errors import ImageDecodeError
from .images import decode_image, encode_image, read_images
from .nsd import convert_nsd
from .synthetic import make_images, plant_responses, planted_dataset

__all__ = [
    "DatasetError",
    "ImageDecodeError",
    "NeuralDataset",
    "load_dataset",
    "write_dataset",
    "validate_dataset",
    "normalize_uri",
    "decode_image",
    "encode_image",
    "read_images",
    "make_images",
    "plant_responses",
    "planted_dataset",
    "convert_cowley_v4",
    "convert_brainio",
    "convert_allen",
    "convert_nsd",
]
