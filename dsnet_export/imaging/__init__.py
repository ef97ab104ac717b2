"""Images in, network input out: one decoder and one preprocessing definition for every path.

Training (and its augmentations), ``eval``, ``run``, ``calibrate``, the media code and the sample app
all decode with ``decode_image`` and preprocess with a ``Preprocessing`` built from the architecture's
input spec (or the bundle manifest, which records that spec).  numpy and Pillow only: no torch.
"""

from .decode import IMAGE_SUFFIXES, decode_image, list_images
from .preprocess import Preprocessing, TrainAugment

__all__ = ["IMAGE_SUFFIXES", "Preprocessing", "TrainAugment", "decode_image", "list_images"]
