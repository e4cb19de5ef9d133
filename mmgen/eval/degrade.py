"""Picture degradations that mimic generator artefacts: blur, Gaussian noise, JPEG.

Used to check that the judge holds up (benchmarks/judge.py) and, later, to make training
pairs for the refiner. PIL RGB in, PIL RGB out; deterministic (noise given its seed).

    from mmgen.eval.degrade import blur, noise, jpeg
    jpeg(noise(blur(img, 0.7), 8 / 255, rng=0), 60)
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage


def _rgb(img: Image.Image) -> Image.Image:
    if not isinstance(img, Image.Image):
        raise TypeError(f"expected a PIL image, got {type(img).__name__}")
    return img if img.mode == "RGB" else img.convert("RGB")


def blur(img: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation `sigma` px (exact kernel, edges replicated)."""
    img = _rgb(img)
    if sigma <= 0:
        return img.copy()
    a = np.asarray(img, dtype=np.float32)
    out = ndimage.gaussian_filter(a, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), "RGB")


def noise(img: Image.Image, sigma: float, rng: np.random.Generator | int | None = None) -> Image.Image:
    """Add i.i.d. Gaussian noise of std `sigma` in [0, 1] intensity units (8/255 = 8 levels).

    `rng` is a numpy Generator or a seed; the same seed gives the same picture.
    """
    img = _rgb(img)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    a = np.asarray(img, dtype=np.float32)
    a = a + gen.normal(0.0, sigma * 255.0, size=a.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "RGB")


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Encode as JPEG at `quality` (Pillow defaults, so 4:2:0 chroma subsampling) and decode."""
    img = _rgb(img)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")
