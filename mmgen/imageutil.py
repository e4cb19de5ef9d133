"""Picture helpers shared by the session, the command line and the server: provenance metadata
in saved PNGs, and transparent backgrounds.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

# IPTC's term for media made by a trained model (https://cv.iptc.org/newscodes/digitalsourcetype/)
TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
XMP_TEMPLATE = """<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/">
   <Iptc4xmpExt:DigitalSourceType>{source}</Iptc4xmpExt:DigitalSourceType>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="r"?>"""
BACKGROUND_TOLERANCE = 40.0      # RGB distance within which a pixel is fully background
EDGE_SOFTNESS = 60.0             # beyond the tolerance, alpha ramps up over this distance
FORMATS = {"png": "PNG", "webp": "WEBP", "jpeg": "JPEG", "jpg": "JPEG"}


def png_info(metadata: dict[str, str] | None) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        if value is not None:
            info.add_itxt(key, str(value))
    info.add_itxt("XML:com.adobe.xmp", XMP_TEMPLATE.format(source=TRAINED_ALGORITHMIC_MEDIA))
    return info


def encode_image(image: Image.Image, fmt: str = "png", metadata: dict[str, str] | None = None,
                 provenance: bool = True) -> bytes:
    """The picture as PNG/WEBP/JPEG bytes; PNGs carry text metadata and the IPTC generated-media marker."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"output format must be one of png, webp, jpeg; got {fmt!r}")
    buf = io.BytesIO()
    if FORMATS[fmt] == "PNG":
        image.save(buf, "PNG", pnginfo=png_info(metadata) if provenance else None)
    elif FORMATS[fmt] == "JPEG":
        image.convert("RGB").save(buf, "JPEG", quality=95)
    else:
        kwargs = {"xmp": XMP_TEMPLATE.format(source=TRAINED_ALGORITHMIC_MEDIA).encode()} if provenance else {}
        image.save(buf, "WEBP", lossless=True, **kwargs)
    return buf.getvalue()


def save_image(image: Image.Image, path: str | Path, metadata: dict[str, str] | None = None,
               provenance: bool = True) -> Path:
    """Save by the path's extension (png, webp, jpg/jpeg), with provenance unless turned off."""
    from .io import atomic_write_bytes
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in FORMATS:
        raise ValueError(f"cannot save as {path.suffix!r}: use .png, .webp or .jpg")
    atomic_write_bytes(path, encode_image(image, fmt, metadata, provenance))
    return path


def background_color(image: Image.Image) -> tuple[int, int, int]:
    """The flat background: the most common colour of the outermost pixels."""
    a = np.asarray(image.convert("RGB"))
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]]).reshape(-1, 3)
    colors, counts = np.unique(border, axis=0, return_counts=True)
    return tuple(int(c) for c in colors[counts.argmax()])


def make_transparent(image: Image.Image) -> Image.Image:
    """RGBA with the flat background made transparent; anti-aliased edges keep a soft alpha."""
    rgb = np.asarray(image.convert("RGB")).astype(np.float32)
    bg = np.array(background_color(image), dtype=np.float32)
    dist = np.sqrt(((rgb - bg) ** 2).sum(-1))
    alpha = np.clip((dist - BACKGROUND_TOLERANCE) / EDGE_SOFTNESS, 0.0, 1.0)
    out = np.dstack([rgb, alpha * 255]).round().astype(np.uint8)
    return Image.fromarray(out, "RGBA")
