"""CARVE's region selection: threshold the contrast map, keep its strongest connected regions,
mask the image and crop it.

Context:
    From the fused contrast map (:func:`circuits.vision.carve_maps.fuse_contrast`) CARVE keeps the
    pixels at or above the ``1 - p`` quantile (``np.percentile``, p = 0.2), labels their connected
    components (``scipy.ndimage.label``, 4-connectivity), ranks the components by summed attention and
    keeps the top ``max(3, int(p * n_regions))`` (the code's ``min_keep_regions`` and its reuse of
    ``top_percent``: the paper's "K regions"). The image outside the kept regions is zeroed, cropped
    to the mask's bounding box and scaled up (LANCZOS) until it covers the original size (the code's
    ``max`` of the two scale factors: the refined image may be larger than the original along one
    side). This module follows ``carve/masking.py``'s default "attention_sum" strategy.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float
from PIL import Image
from scipy import ndimage


def region_mask(attention: Float[np.ndarray, "height width"], *, top_percent: float = 0.2,
                min_regions: int = 3) -> Bool[np.ndarray, "height width"]:
    """The pixels of the strongest connected regions of the top ``top_percent`` of ``attention``."""
    threshold = np.percentile(attention, (1.0 - top_percent) * 100)
    labels, count = ndimage.label(attention >= threshold)
    if count == 0:
        return np.zeros(attention.shape, dtype=bool)
    scores = ndimage.sum(attention, labels, index=np.arange(1, count + 1))
    keep = max(min_regions, int(count * top_percent))
    kept = np.argsort(-np.asarray(scores), kind="stable")[:keep] + 1
    return np.isin(labels, kept)


def mask_box(mask: Bool[np.ndarray, "height width"]) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` of the mask's pixels, right and bottom exclusive (the whole image
    when the mask is empty, as the code)."""
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0, 0, mask.shape[1], mask.shape[0]
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def masked_image(image: Image.Image, mask: Bool[np.ndarray, "height width"]) -> Image.Image:
    """``image`` with every pixel outside ``mask`` set to black."""
    pixels = np.asarray(image.convert("RGB"))
    return Image.fromarray((pixels * mask[..., None]).astype(np.uint8))


def cover_size(crop: tuple[int, int], original: tuple[int, int]) -> tuple[int, int]:
    """The size a ``crop = (width, height)`` is scaled to so that it covers ``original``, aspect kept."""
    scale = max(original[0] / crop[0], original[1] / crop[1])
    return int(crop[0] * scale), int(crop[1] * scale)


def refined_image(image: Image.Image, mask: Bool[np.ndarray, "height width"]) -> Image.Image:
    """CARVE's second image: ``image`` masked to ``mask``, cropped to its box, resized (LANCZOS) to
    cover the original size."""
    crop = masked_image(image, mask).crop(mask_box(mask))
    return crop.resize(cover_size(crop.size, image.size), Image.LANCZOS)
