"""The OpenAI shapes of `mmgen serve`: request options, uploads and masks, responses, events.

Everything here is plain data in, plain data out (no web framework, no model), so the server in
`server.py` stays a thin layer of routes. The shapes follow the official `openai` client's types:

    ImagesResponse          openai/types/images_response.py
    image_generation.*      openai/types/image_gen_{partial_image,completed}_event.py
    image_edit.*            openai/types/image_edit_{partial_image,completed}_event.py
    Response, its events    openai/types/responses/response*.py (image_generation_call items)
    errors                  {"error": {"message", "type", "code", "param"}}

mmgen draws 128 × 128 pictures. The sizes clients commonly send (256² … 1024², 1536x1024, 1024x1536)
are served by upscaling that picture crisply, by an integer factor, and letterboxing non-square sizes
on the picture's own background colour (`fit_picture`). Extensions a client may send and OpenAI
would not know: `seed`, and the sampling settings `cfg`, `temperature`, `top_k`, `top_p`.
"""
from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
import uuid
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from .imageutil import encode_image
from .inputs import MAX_PICTURES, MAX_SEED, SessionError, TextTooLong, check_text, redrawn_patches
from .settings import Settings
from .world.language import find_description

IMAGE_SIDE_PX = 128                      # what the model draws, square
IMAGE_SIZE = f"{IMAGE_SIDE_PX}x{IMAGE_SIDE_PX}"
# sizes served by upscaling the drawn picture: the square ones OpenAI's clients and tools default to
# (1024x1024 above all), and gpt-image's two non-square ones, letterboxed. Each side is a whole
# multiple of 128, so the upscale is pixel replication: crisp, no invented detail.
SIZES = (IMAGE_SIZE, "256x256", "512x512", "1024x1024", "1536x1024", "1024x1536", "auto")
OUTPUT_FORMATS = ("png", "webp", "jpeg")
BACKGROUNDS = ("transparent", "opaque", "auto")
QUALITIES = ("low", "medium", "high", "xhigh", "max", "auto", "standard", "hd")
MAX_N = MAX_PICTURES
MAX_PARTIAL_IMAGES = 3
UPLOAD_FORMATS = ("PNG", "JPEG", "WEBP")
MAX_UPLOAD_PIXELS = 4096 * 4096          # refused before decoding: no decompression bombs
SAMPLING_EXTENSIONS = ("cfg", "word_cfg", "temperature", "top_k", "top_p")
MEDIA_TYPES = {"png": "image/png", "webp": "image/webp", "jpeg": "image/jpeg"}


# --- errors -------------------------------------------------------------------------------------
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
               404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
               429: "rate_limit_error",
               500: "server_error", 503: "server_error", 504: "timeout_error"}


class APIError(Exception):
    """An error a client should see, as OpenAI shapes it: status, message, type, code, param."""

    def __init__(self, status: int, message: str, *, code: str | None = None, param: str | None = None,
                 type: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.type = type or ERROR_TYPES.get(status, "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code, "param": self.param}}

    def event(self, sequence_number: int) -> dict:
        """The error as a stream event, once a stream has begun: OpenAI's ResponseErrorEvent fields (type,
        sequence_number, code, message, param) and the `error` object the official client raises from."""
        return {"type": "error", "sequence_number": sequence_number, "code": self.code, "message": self.message,
                "param": self.param, **self.body()}


def bad_request(message: str, param: str | None = None, code: str | None = "invalid_value") -> APIError:
    return APIError(400, message, code=code, param=param)


# --- reading fields (JSON values, or multipart form strings) -----------------------------------------
# No request of this API nests deeper than a few levels (input → message → content → part → field);
# parts of a body (tools) are echoed back, and encoding a deeply nested echo recurses, so bodies are
# refused past this depth rather than parsed and failing later as a 500.
MAX_JSON_DEPTH = 32


def _no_constant(name: str):
    # Python's json reads NaN and Infinity, which are not JSON and would slip through number checks
    raise ValueError(f"{name} is not a JSON number")


def json_depth(value) -> int:
    """How deeply `value` nests lists and objects (a scalar: 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_JSON_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_json_object(raw: bytes) -> dict:
    """The request body as a JSON object, or a 400 that says what is wrong with it: bad syntax, NaN,
    numbers of thousands of digits, nesting past MAX_JSON_DEPTH (the parser itself gives up at
    Python's recursion limit), a body that is not an object."""
    try:
        data = json.loads(raw, parse_constant=_no_constant)
    except RecursionError:
        raise bad_request(f"the JSON body nests too deeply; the limit is {MAX_JSON_DEPTH} levels",
                          code="invalid_json") from None
    except (UnicodeDecodeError, ValueError) as e:       # JSONDecodeError, and int() refusing 4300+ digits
        raise bad_request(f"could not parse the JSON body of the request: {e}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request(f"the request body must be a JSON object, not {type(data).__name__}", code="invalid_json")
    if json_depth(data) > MAX_JSON_DEPTH:
        raise bad_request(f"the JSON body nests too deeply; the limit is {MAX_JSON_DEPTH} levels",
                          code="invalid_json")
    return data


def get_str(fields: dict, name: str, default: str | None = None, *, required: bool = False) -> str | None:
    value = fields.get(name)
    if value is None:
        if required:
            raise bad_request(f"'{name}' is required", name, code="missing_required_parameter")
        return default
    if not isinstance(value, str):
        raise bad_request(f"'{name}' must be a string, not {type(value).__name__}", name, code="invalid_type")
    return value


def get_int(fields: dict, name: str, default: int | None, lo: int, hi: int, *, form: bool = False) -> int | None:
    value = fields.get(name)
    if value is None or (form and value == ""):
        return default
    if form and isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise bad_request(f"'{name}' must be an integer, got {value[:40]!r}", name, code="invalid_type") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"'{name}' must be an integer, not {type(value).__name__}", name, code="invalid_type")
    if not lo <= value <= hi:
        raise bad_request(f"'{name}' must be from {lo} to {hi}; got {value}", name)
    return value


def get_number(fields: dict, name: str, *, form: bool = False) -> float | None:
    value = fields.get(name)
    if value is None or (form and value == ""):
        return None
    if form and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise bad_request(f"'{name}' must be a number, got {value[:40]!r}", name, code="invalid_type") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise bad_request(f"'{name}' must be a number, not {type(value).__name__}", name, code="invalid_type")
    return value


def get_bool(fields: dict, name: str, default: bool, *, form: bool = False) -> bool:
    value = fields.get(name)
    if value is None:
        return default
    if form and isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    if not isinstance(value, bool):
        raise bad_request(f"'{name}' must be true or false, not {value!r:.40}", name, code="invalid_type")
    return value


def get_choice(fields: dict, name: str, choices: tuple[str, ...], default: str) -> str:
    value = get_str(fields, name, default)
    if value not in choices:
        raise bad_request(f"'{name}' must be one of {', '.join(choices)}; got {value!r:.60}", name)
    return value


# --- image options ------------------------------------------------------------------------------
@dataclass
class ImageOptions:
    """What a request asks of its pictures, validated."""
    n: int = 1
    size: str = "auto"
    background: str = "auto"
    output_format: str = "png"
    quality: str = "auto"
    partial_images: int = 0
    stream: bool = False
    seed: int | None = None
    settings: dict = field(default_factory=dict)     # session overrides: background + sampling extensions

    @property
    def pixels(self) -> tuple[int, int]:
        """(width, height) of the pictures returned: "auto" is the model's own 128 × 128."""
        return parse_size(IMAGE_SIZE if self.size == "auto" else self.size)

    @property
    def size_label(self) -> str:
        """The `size` field of responses and events: the size actually returned, never "auto"."""
        return IMAGE_SIZE if self.size == "auto" else self.size

    @property
    def resolved_background(self) -> str:
        # "auto": the server decides; the model draws on a flat background, kept opaque
        return "transparent" if self.background == "transparent" else "opaque"

    def preview_rows(self) -> dict[int, int]:
        """Rows (of 16) after which a partial image is sent → its partial_image_index.

        k partial images are spread evenly over the picture: k=1 → row 8, k=2 → 5, 11, k=3 → 4, 8, 12."""
        k = self.partial_images if self.stream else 0
        return {round(16 * (i + 1) / (k + 1)): i for i in range(k)}


def parse_image_options(fields: dict, *, form: bool = False, allow_n: bool = True,
                        defaults: dict | None = None) -> ImageOptions:
    """Validate OpenAI's picture options (and mmgen's extensions) from a JSON body, a form, or a tool."""
    size = get_str(fields, "size", "auto")
    if size not in SIZES:
        raise bad_request(f"'size' must be one of {', '.join(SIZES)}: this model draws "
                          f"{IMAGE_SIZE.replace('x', '×')} pictures and serves the larger sizes upscaled "
                          f"(non-square ones letterboxed); got {size!r:.40}", "size", code="unsupported_value")
    response_format = get_str(fields, "response_format", "b64_json")
    if response_format == "url":
        raise bad_request("response_format 'url' is not supported: this local server does not host files; "
                          "use 'b64_json' (the default)", "response_format", code="unsupported_value")
    if response_format != "b64_json":
        raise bad_request(f"'response_format' must be b64_json; got {response_format!r:.40}", "response_format")
    options = ImageOptions(
        n=get_int(fields, "n", 1, 1, MAX_N, form=form) if allow_n else 1,
        size=size,
        background=get_choice(fields, "background", BACKGROUNDS, "auto"),
        output_format=get_choice(fields, "output_format", OUTPUT_FORMATS, "png"),
        quality=get_choice(fields, "quality", QUALITIES, "auto"),
        partial_images=get_int(fields, "partial_images", 0, 0, MAX_PARTIAL_IMAGES, form=form),
        stream=get_bool(fields, "stream", False, form=form),
        seed=get_int(fields, "seed", None, 0, MAX_SEED, form=form))
    if not allow_n and fields.get("n") not in (None, 1):
        raise bad_request("'n' is not an option here: one picture per reply", "n")
    # output_compression: JPEG is written at quality 95 and WEBP losslessly (imageutil.encode_image);
    # the value is checked so a typo is caught, and does not change the bytes.
    get_int(fields, "output_compression", None, 0, 100, form=form)
    if options.background == "transparent" and options.output_format == "jpeg":
        raise bad_request("a transparent background needs output_format png or webp (JPEG has no alpha)", "background")
    settings = {"background": options.resolved_background}
    for name in SAMPLING_EXTENSIONS:
        if name == "top_k":
            value = get_int(fields, name, None, 1, 1 << 20, form=form)
        else:
            value = get_number(fields, name, form=form)
        if value is not None:
            settings[name] = value
    check_settings(settings, defaults or {})
    options.settings = settings
    return options


def check_settings(settings: dict, defaults: dict) -> None:
    """The session's own checks, now rather than after the queue; a failure names its parameter."""
    for name, value in settings.items():
        try:
            Settings(**{**defaults, name: value})
        except SessionError as e:
            raise bad_request(str(e), name) from None        # the session's messages start with the name
    try:
        Settings(**{**defaults, **settings})
    except SessionError as e:
        raise bad_request(str(e)) from None


def checked_text(text: str, what: str, param: str, max_chars: int, *, allow_empty: bool = False) -> str:
    """`text` if the session would take it (inputs.check_text: the same check, and the same sentence,
    as in the terminal and on the command line), else a 400 that names `param`."""
    try:
        return check_text(text, what, limit=max_chars, allow_empty=allow_empty)
    except TextTooLong as e:
        raise bad_request(str(e), param, code="string_above_max_length") from None
    except SessionError as e:
        raise bad_request(str(e), param) from None


def check_prompt(fields: dict, max_chars: int, name: str = "prompt") -> str:
    return checked_text(get_str(fields, name, required=True), f"'{name}'", name, max_chars)


# --- uploads, data URLs, masks ---------------------------------------------------------------------
def read_picture(data: bytes, param: str) -> Image.Image:
    """A PNG/JPEG/WEBP upload as a loaded PIL image, or a 400 that names the field."""
    if not data:
        raise bad_request(f"'{param}' is an empty file", param)
    try:
        image = Image.open(io.BytesIO(data))
        fmt = image.format
        if fmt not in UPLOAD_FORMATS:
            raise bad_request(f"'{param}' must be a PNG, JPEG or WEBP picture; got {fmt}", param,
                              code="invalid_image_format")
        w, h = image.size
        if w * h > MAX_UPLOAD_PIXELS:
            raise bad_request(f"'{param}' is {w}×{h} pixels; the limit is {MAX_UPLOAD_PIXELS:,} pixels", param)
        image.load()
    except APIError:
        raise
    except Exception as e:    # noqa: BLE001 — any decoder failure on user bytes is a bad upload, never a 500
        raise bad_request(f"cannot read '{param}' as a picture (PNG, JPEG or WEBP): {type(e).__name__}", param,
                          code="invalid_image") from None
    image.format = fmt           # load() keeps it, a copy would not: mask checks need it
    return image


DATA_URL = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*),(?P<data>.*)", re.S)


def decode_data_url(url, param: str) -> bytes:
    """The bytes of a `data:image/png;base64,...` URL; a web URL is refused (nothing is fetched)."""
    if not isinstance(url, str):
        raise bad_request(f"'{param}' must be a data URL string", param, code="invalid_type")
    if url.startswith(("http://", "https://")):
        raise bad_request(f"'{param}': this local server does not fetch URLs; send the picture inline as "
                          "data:image/png;base64,...", param, code="unsupported_value")
    m = DATA_URL.fullmatch(url.strip())
    if m is None or ";base64" not in m["params"]:
        raise bad_request(f"'{param}' must be a base64 data URL (data:image/png;base64,...)", param)
    try:
        return base64.b64decode(m["data"], validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"'{param}' is not valid base64", param) from None


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def read_mask(data: bytes, image: Image.Image, param: str = "mask") -> Image.Image:
    """The mask's alpha channel (mode L). OpenAI's rule: alpha 0 marks where the picture may change."""
    mask = read_picture(data, param)
    if mask.format != "PNG":
        raise bad_request(f"'{param}' must be a PNG with an alpha channel; got {mask.format}", param)
    if mask.size != image.size:
        raise bad_request(f"'{param}' is {mask.width}×{mask.height} but the image is {image.width}×{image.height}; "
                          "they must be the same size", param)
    if not has_alpha(mask):
        raise bad_request(f"'{param}' has no alpha channel: make it a PNG that is transparent (alpha 0) where the "
                          "picture should change and opaque where it should stay", param)
    alpha = mask.convert("RGBA").getchannel("A")
    # the session redraws the patches inputs.redrawn_patches marks; a mask that marks none would
    # fail on the worker, after the queue
    if not any(redrawn_patches(alpha)):
        raise bad_request(f"'{param}' marks nothing to change: it is opaque everywhere; make it transparent "
                          "(alpha 0) where the picture should change", param)
    return alpha


def apply_mask(new: Image.Image, original: Image.Image, alpha: Image.Image) -> Image.Image:
    """Keep the original where the mask is opaque, the new picture where alpha = 0 (blend between).

    The model has already redrawn only the masked patches (a region edit on the codes); pasting
    the original pixels back makes the kept region exactly the uploaded one, not its VQ decode."""
    original = original.convert(new.mode)
    if original.size != new.size:
        original = original.resize(new.size, Image.LANCZOS)
    if alpha.size != new.size:
        alpha = alpha.resize(new.size, Image.BILINEAR)
    return Image.composite(original, new, alpha)


def b64_picture(image: Image.Image, fmt: str, metadata: dict[str, str], provenance: bool = True) -> str:
    return base64.b64encode(encode_image(image, fmt, metadata, provenance=provenance)).decode("ascii")


# --- sizes --------------------------------------------------------------------------------------------
def parse_size(size: str) -> tuple[int, int]:
    width, _, height = size.partition("x")
    return int(width), int(height)


def border_colour(image: Image.Image) -> tuple[int, ...]:
    """The picture's own background: the per-channel median of its outermost pixels (alpha included,
    so a transparent picture is letterboxed transparent)."""
    a = np.asarray(image)
    a = a.reshape(*a.shape[:2], -1)
    border = np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])
    return tuple(int(round(v)) for v in np.median(border, axis=0))


def fit_picture(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The picture at `size`: scaled up by the largest whole factor that fits (nearest neighbour:
    each pixel becomes a k × k block, crisp), centred, the rest filled with its border colour."""
    if image.size == size:
        return image
    k = max(1, min(size[0] // image.width, size[1] // image.height))
    scaled = image.resize((image.width * k, image.height * k), Image.Resampling.NEAREST)
    if scaled.size == size:
        return scaled
    fill = border_colour(image)
    canvas = Image.new(image.mode, size, fill if len(fill) > 1 else fill[0])
    canvas.paste(scaled, ((size[0] - scaled.width) // 2, (size[1] - scaled.height) // 2))
    return canvas


# --- usage --------------------------------------------------------------------------------------
@dataclass
class Usage:
    """Stream ids in and out: image ids are picture codes, text ids are words and special tokens."""
    input_text: int = 0
    input_image: int = 0
    output_text: int = 0
    output_image: int = 0

    @property
    def input(self) -> int:
        return self.input_text + self.input_image

    @property
    def output(self) -> int:
        return self.output_text + self.output_image

    def images_api(self) -> dict:
        return {"input_tokens": self.input, "output_tokens": self.output, "total_tokens": self.input + self.output,
                "input_tokens_details": {"text_tokens": self.input_text, "image_tokens": self.input_image},
                "output_tokens_details": {"text_tokens": self.output_text, "image_tokens": self.output_image}}

    def responses_api(self) -> dict:
        return {"input_tokens": self.input, "output_tokens": self.output, "total_tokens": self.input + self.output,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0}}


# --- Images API shapes --------------------------------------------------------------------------------
def images_response(*, created: int, pictures: list[str], prompt: str, options: ImageOptions, usage: Usage,
                    seed: int | None, text: str, note: str = "") -> dict:
    """OpenAI's ImagesResponse, plus `mmgen` (seed, the model's words, the note naming the prompt's
    words the model was never taught: unknown_words.note) as an extension field. The
    revised prompt is the layout the model's reply planned ("a red circle in the top left on a white
    background"), else the prompt as given."""
    quality = options.quality if options.quality in ("low", "medium", "high") else None
    revised = find_description(text) or prompt
    return {"created": created, "data": [{"b64_json": p, "revised_prompt": revised} for p in pictures],
            "background": options.resolved_background, "output_format": options.output_format,
            "size": options.size_label, "quality": quality, "usage": usage.images_api(),
            "mmgen": {"seed": seed, "text": text, "note": note}}


def partial_image_event(kind: str, *, b64: str, index: int, options: ImageOptions) -> dict:
    """kind: "image_generation" or "image_edit"."""
    return {"type": f"{kind}.partial_image", "b64_json": b64, "partial_image_index": index,
            "created_at": int(time.time()), "background": options.resolved_background,
            "output_format": options.output_format, "quality": options.quality, "size": options.size_label}


def completed_event(kind: str, *, b64: str, options: ImageOptions, usage: Usage, seed: int | None = None,
                    text: str = "", note: str = "") -> dict:
    """The stream's last event for one picture, with the same `mmgen` extension field as images_response."""
    u = usage.images_api()
    u.pop("output_tokens_details")      # the event's Usage has no output details
    return {"type": f"{kind}.completed", "b64_json": b64, "created_at": int(time.time()),
            "background": options.resolved_background, "output_format": options.output_format,
            "quality": options.quality, "size": options.size_label, "usage": u,
            "mmgen": {"seed": seed, "text": text, "note": note}}


def sse(data: dict, event: str | None = None) -> bytes:
    """One server-sent event; the openai client reads the JSON in `data:` and picks the type from it."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


# --- Responses API -----------------------------------------------------------------------------------
@dataclass
class ResponsesInput:
    text: str
    image: Image.Image | None
    picture: str                    # the session's picture mode: "auto" | "always" | "never"
    options: ImageOptions
    tools: list
    tool_choice: object


def parse_responses_request(body: dict, max_chars: int, defaults: dict | None = None) -> ResponsesInput:
    """`input` (a string, or messages whose content holds input_text / input_image parts), `tools`,
    `tool_choice`. Earlier turns come from `previous_response_id`, not from replayed messages."""
    raw = body.get("input")
    texts: list[str] = []
    images: list[bytes] = []
    if isinstance(raw, str):
        texts.append(raw)
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            where = f"input[{i}]"
            if not isinstance(item, dict):
                raise bad_request(f"'{where}' must be an object", where, code="invalid_type")
            kind, role = item.get("type", "message"), item.get("role")
            if kind != "message":
                raise bad_request(f"'{where}': items of type {kind!r:.40} are not supported; send user messages "
                                  "and carry the conversation with previous_response_id", where)
            if role in ("system", "developer"):
                continue            # the model has no instruction channel; such messages are not shown to it
            if role != "user":
                raise bad_request(f"'{where}': only user messages are accepted (got role {role!r:.20}); earlier "
                                  "turns come from previous_response_id", where)
            content = item.get("content")
            if isinstance(content, str):
                texts.append(content)
                continue
            if not isinstance(content, list):
                raise bad_request(f"'{where}.content' must be a string or a list of parts", f"{where}.content")
            for j, part in enumerate(content):
                pwhere = f"{where}.content[{j}]"
                ptype = part.get("type") if isinstance(part, dict) else None
                if ptype == "input_text":
                    texts.append(get_str(part, "text", required=True))
                elif ptype == "input_image":
                    if part.get("file_id") is not None:
                        raise bad_request(f"'{pwhere}': file ids are not supported; send image_url as a data URL",
                                          pwhere)
                    images.append(decode_data_url(part.get("image_url"), f"{pwhere}.image_url"))
                else:
                    raise bad_request(f"'{pwhere}' must be an input_text or input_image part", pwhere)
    elif raw is None:
        raise bad_request("'input' is required", "input", code="missing_required_parameter")
    else:
        raise bad_request(f"'input' must be a string or a list of messages, not {type(raw).__name__}", "input",
                          code="invalid_type")
    if len(images) > 1:
        raise bad_request(f"this model takes one picture per message; got {len(images)}", "input")
    text = checked_text("\n".join(t for t in texts if t), "the input text", "input", max_chars, allow_empty=True)
    image = read_picture(images[0], "input_image") if images else None
    if not text.strip() and image is None:
        raise bad_request("'input' is empty", "input")

    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise bad_request("'tools' must be a list", "tools", code="invalid_type")
    tool = None
    for i, t in enumerate(tools):
        if not isinstance(t, dict) or t.get("type") != "image_generation":
            kind = t.get("type") if isinstance(t, dict) else type(t).__name__
            raise bad_request(f"'tools[{i}]': only the image_generation tool is available, not {kind!r:.40}",
                              f"tools[{i}]")
        tool = t
    tool_choice = body.get("tool_choice", "auto")
    if tool is None:
        picture = "never"            # no image tool: words only
    elif tool_choice in ("auto", None):
        picture = "auto"             # the model decides whether to draw
    elif tool_choice == "none":
        picture = "never"
    elif tool_choice == "required" or (isinstance(tool_choice, dict) and tool_choice.get("type") == "image_generation"):
        picture = "always"
    else:
        raise bad_request("'tool_choice' must be auto, none, required or {\"type\": \"image_generation\"}",
                          "tool_choice")
    options = parse_image_options({**(tool or {}), **{k: body[k] for k in ("seed", *SAMPLING_EXTENSIONS) if k in body},
                                   "stream": body.get("stream", False)}, allow_n=False, defaults=defaults)
    return ResponsesInput(text=text, image=image, picture=picture, options=options, tools=tools,
                          tool_choice=tool_choice)


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def message_item(item_id: str, text: str, status: str = "completed") -> dict:
    done = status == "completed"
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if done else []
    return {"type": "message", "id": item_id, "status": status, "role": "assistant", "content": content}


def image_call_item(item_id: str, *, result: str | None, options: ImageOptions, action: str,
                    status: str = "completed", text: str = "") -> dict:
    """`text`: the model's words with the picture; their layout plan, if any, is the revised prompt."""
    return {"type": "image_generation_call", "id": item_id, "status": status, "result": result, "action": action,
            "background": options.resolved_background, "output_format": options.output_format,
            "quality": options.quality, "size": options.size_label, "revised_prompt": find_description(text)}


def response_object(*, response_id: str, model: str, created_at: int, status: str, output: list[dict],
                    request: ResponsesInput, previous: str | None, usage: Usage | None) -> dict:
    return {"id": response_id, "object": "response", "created_at": created_at, "status": status,
            "completed_at": int(time.time()) if status == "completed" else None,
            "model": model, "output": output, "previous_response_id": previous, "error": None,
            "incomplete_details": None, "instructions": None, "metadata": {}, "parallel_tool_calls": False,
            "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
            "tools": request.tools, "temperature": None, "top_p": None, "store": True, "background": False,
            "text": {"format": {"type": "text"}}, "truncation": "disabled",
            "usage": usage.responses_api() if usage is not None else None}


class ResponseEvents:
    """Turns a reply's progress (words so far, partial pictures, the end) into the Responses API's
    stream events, numbered in order; the item ids match those of the final response object."""

    def __init__(self, skeleton: dict, message_id: str, image_id: str, options: ImageOptions, action: str):
        self.skeleton, self.message_id, self.image_id = skeleton, message_id, image_id
        self.options, self.action = options, action
        self.seq, self.sent, self.index = 0, "", 0
        self.message_open = self.message_done = self.image_open = False

    def _event(self, type: str, **fields) -> dict:
        event = {"type": type, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def start(self) -> list[dict]:
        return [self._event("response.created", response=self.skeleton),
                self._event("response.in_progress", response=self.skeleton)]

    def _open_message(self) -> list[dict]:
        self.message_open = True
        return [self._event("response.output_item.added", output_index=self.index,
                            item=message_item(self.message_id, "", status="in_progress")),
                self._event("response.content_part.added", item_id=self.message_id, output_index=self.index,
                            content_index=0, part={"type": "output_text", "text": "", "annotations": []})]

    def text(self, so_far: str) -> list[dict]:
        # a delta can only add: if decoding changed earlier characters, the final text comes at the close;
        # leading spaces are dropped, as the final (stripped) text drops them
        so_far = so_far.lstrip()
        if self.message_done or not so_far.startswith(self.sent) or so_far == self.sent:
            return []
        events = [] if self.message_open else self._open_message()
        events.append(self._event("response.output_text.delta", item_id=self.message_id, output_index=self.index,
                                  content_index=0, delta=so_far[len(self.sent):], logprobs=[]))
        self.sent = so_far
        return events

    def close_message(self, final: str) -> list[dict]:
        if self.message_done or not (self.message_open or final):
            return []
        events = [] if self.message_open else self._open_message()
        events += [self._event("response.output_text.done", item_id=self.message_id, output_index=self.index,
                               content_index=0, text=final, logprobs=[]),
                   self._event("response.content_part.done", item_id=self.message_id, output_index=self.index,
                               content_index=0, part={"type": "output_text", "text": final, "annotations": []}),
                   self._event("response.output_item.done", output_index=self.index,
                               item=message_item(self.message_id, final))]
        self.message_done = True
        self.index += 1
        return events

    def _open_image(self) -> list[dict]:
        self.image_open = True
        item = image_call_item(self.image_id, result=None, options=self.options, action=self.action,
                               status="in_progress")
        where = {"item_id": self.image_id, "output_index": self.index}
        return [self._event("response.output_item.added", output_index=self.index, item=item),
                self._event("response.image_generation_call.in_progress", **where),
                self._event("response.image_generation_call.generating", **where)]

    def partial(self, so_far_text: str, b64: str, partial_index: int) -> list[dict]:
        events = self.close_message(so_far_text.strip()) if self.message_open else []
        if not self.image_open:
            events += self._open_image()
        events.append(self._event("response.image_generation_call.partial_image", item_id=self.image_id,
                                  output_index=self.index, partial_image_index=partial_index, partial_image_b64=b64,
                                  background=self.options.resolved_background,
                                  output_format=self.options.output_format, quality=self.options.quality,
                                  size=self.options.size_label))
        return events

    def error(self, error: APIError) -> list[dict]:
        """A failure after the stream began: the error event, numbered in order with the rest."""
        event = error.event(self.seq)
        self.seq += 1
        return [event]

    def finish(self, final_text: str, result: str | None, response: dict) -> list[dict]:
        events = self.close_message(final_text)
        if result is not None:
            if not self.image_open:
                events += self._open_image()
            events += [self._event("response.image_generation_call.completed", item_id=self.image_id,
                                   output_index=self.index),
                       self._event("response.output_item.done", output_index=self.index,
                                   item=image_call_item(self.image_id, result=result, options=self.options,
                                                        action=self.action, text=final_text))]
        events.append(self._event("response.completed", response=response))
        return events
