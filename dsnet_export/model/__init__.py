"""The slimmable supernet in PyTorch (needs the ``export`` extra: torch)."""

from .checkpoint import load_supernet, read_metadata, save_supernet
from .supernet import DenseSubnet, DynamicOutput, Supernet

__all__ = ["DenseSubnet", "DynamicOutput", "Supernet", "load_supernet", "read_metadata", "save_supernet"]
