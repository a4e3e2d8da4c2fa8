"""CARVE's analyses: an image's texture and colour complexity, and the entropy of the answer's
attention over the image.

Context:
    Ge et al. (arXiv 2509.06461, Section 3) relate how hard an image is to how spread a VLM's attention
    over it is: texture complexity ``Tc(I) = ||Canny(I)||_1 / (H W)``, colour complexity
    ``Cc(I) = -(1/ln B) sum_b rho_b ln rho_b`` over a B = 180-bin hue histogram (OpenCV's 8-bit HSV
    hue, 0..179), and the attention entropy at the final generation step over the visual tokens,
    averaged over the layers L. They find both complexities correlate positively with the entropy.

Deviations, named:
    * OpenCV is not a dependency, so :func:`canny` is written with numpy/scipy: optional Gaussian
      smoothing (``sigma``; ``cv2.Canny`` itself does none, the usual recipe blurs first), 3 x 3 Sobel
      gradients, OpenCV's default L1 magnitude ``|gx| + |gy|``, non-maximum suppression over four
      directions, and hysteresis (8-connected) with ``low`` / ``high`` thresholds (defaults 100 / 200,
      the values usually passed to ``cv2.Canny``). Edges are returned as booleans, so ``Tc`` is the
      share of edge pixels; OpenCV's 0/255 output would make it 255 times larger (a constant that no
      correlation sees).
    * The hue is computed from RGB with OpenCV's 8-bit formula (hue in degrees halved and rounded,
      0 for grey pixels) rather than by rescaling PIL's 0..255 ``HSV`` hue, whose 256 levels cannot
      map one-to-one onto 180 bins.
    * The attention entropy is ``-sum a ln a`` over the image tokens of the head-averaged attention
      of the last position, not renormalised over the image tokens (as the code); the paper's
      "contrasted attention weight" is ambiguous, and the plain attention of the task query is used.
"""

from __future__ import annotations

import numpy as np
from jaxtyping import Bool, Float, Int
from PIL import Image
from scipy import ndimage

HUE_BINS = 180
"""OpenCV's 8-bit hue range 0..179."""


def grey(image: Image.Image) -> Float[np.ndarray, "height width"]:
    """Luma as OpenCV's ``COLOR_RGB2GRAY`` weighs it (0.299 R + 0.587 G + 0.114 B), 0..255."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    return rgb @ np.array([0.299, 0.587, 0.114])


def sobel_gradients(values: Float[np.ndarray, "height width"]) -> tuple[np.ndarray, np.ndarray]:
    """``(gx, gy)``: 3 x 3 Sobel derivatives along columns and rows (edges replicated, as OpenCV's
    ``BORDER_REPLICATE``-like ``nearest``)."""
    return ndimage.sobel(values, axis=1, mode="nearest"), ndimage.sobel(values, axis=0, mode="nearest")


def non_maximum_suppression(magnitude: Float[np.ndarray, "height width"], gx: np.ndarray,
                            gy: np.ndarray) -> Float[np.ndarray, "height width"]:
    """``magnitude`` where it is a maximum across the edge (gradient direction quantised to 0, 45,
    90, 135 degrees; strictly above one neighbour and at least the other, as OpenCV), else 0."""
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180.0) % 180.0
    sector = (np.round(angle / 45.0).astype(int)) % 4
    offsets = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}  # (row, col) step along the gradient
    padded = np.pad(magnitude, 1)
    h, w = magnitude.shape
    keep = np.zeros_like(magnitude, dtype=bool)
    for index, (dr, dc) in offsets.items():
        ahead = padded[1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
        behind = padded[1 - dr:1 - dr + h, 1 - dc:1 - dc + w]
        keep |= (sector == index) & (magnitude > ahead) & (magnitude >= behind)
    return np.where(keep, magnitude, 0.0)


def hysteresis(thin: Float[np.ndarray, "height width"], low: float,
               high: float) -> Bool[np.ndarray, "height width"]:
    """Pixels above ``low`` that are 8-connected to a pixel above ``high``."""
    weak = thin > low
    labels, count = ndimage.label(weak, structure=np.ones((3, 3), dtype=bool))
    strong_labels = np.unique(labels[thin > high])
    return np.isin(labels, strong_labels[strong_labels > 0])


def canny(image: Image.Image | np.ndarray, *, low: float = 100.0, high: float = 200.0,
          sigma: float = 1.0) -> Bool[np.ndarray, "height width"]:
    """Canny edges of an image (or a 2-D grey array, 0..255); see the module docstring."""
    values = grey(image) if isinstance(image, Image.Image) else np.asarray(image, dtype=np.float64)
    if sigma > 0:
        values = ndimage.gaussian_filter(values, sigma, mode="nearest")
    gx, gy = sobel_gradients(values)
    return hysteresis(non_maximum_suppression(np.abs(gx) + np.abs(gy), gx, gy), low, high)


def texture_complexity(image: Image.Image, **canny_options) -> float:
    """``Tc``: the share of the image's pixels that are Canny edges."""
    return float(canny(image, **canny_options).mean())


def opencv_hue(image: Image.Image) -> Int[np.ndarray, "height width"]:
    """Each pixel's hue on OpenCV's 8-bit scale: degrees / 2, rounded, 0..179 (0 for grey pixels)."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    top, spread = rgb.max(-1), rgb.max(-1) - rgb.min(-1)
    safe = np.where(spread == 0, 1.0, spread)
    degrees = np.where(top == r, 60.0 * (g - b) / safe,
                       np.where(top == g, 120.0 + 60.0 * (b - r) / safe, 240.0 + 60.0 * (r - g) / safe))
    degrees = np.where(spread == 0, 0.0, degrees % 360.0)
    return (np.floor(degrees / 2.0 + 0.5).astype(int)) % HUE_BINS


def hue_entropy(hue: Int[np.ndarray, "*pixels"], bins: int = HUE_BINS) -> float:
    """Entropy of the hue histogram divided by ``ln bins``: 0 for one hue, 1 for all hues equally."""
    counts = np.bincount(np.asarray(hue).ravel(), minlength=bins)[:bins].astype(np.float64)
    share = counts[counts > 0] / counts.sum()
    return float(-(share * np.log(share)).sum() / np.log(bins))


def colour_complexity(image: Image.Image) -> float:
    """``Cc``: the normalised entropy of the image's 180-bin hue histogram."""
    return hue_entropy(opencv_hue(image))


def attention_entropy(maps: Float[np.ndarray, "step layer image_token"]) -> float:
    """Entropy ``-sum a ln a`` over the image tokens at the final step, averaged over the layers
    (the weights as recorded, not renormalised)."""
    last = np.asarray(maps[-1], dtype=np.float64)
    terms = np.where(last > 0, -last * np.log(np.where(last > 0, last, 1.0)), 0.0)
    return float(terms.sum(-1).mean())
