"""What a request to `transferkit serve` may hold, read and checked before the model sees it.

* `Limits`: the most bytes, files, pixels and texts one request may hold; each has a range.
* `read_body`: the body, refused as soon as it is known to be too large.
* `read_images`: a multipart body's files, refused whole where it is truncated, holds a part the
  server would not read, or holds more pixels than `Limits.max_request_pixels` (read from the
  images' headers, before anything is decoded); then decoded by `decode_image` in the server's
  `FairPool`, which takes turns between requests, so that one large request cannot make the
  others wait for all of its images.
* `parse_texts`: a JSON body's texts, each checked (a string, not empty, not too long, valid
  Unicode) so that one client's text can never fail the model call it shares with others.

Every refusal is a `RequestError`: an HTTP status and a message that names the item and says
how to fix it.
"""

from __future__ import annotations

import functools
import io
import json
from dataclasses import asdict, dataclass

import numpy as np

from transferkit.errors import InputError

__all__ = [
    "Limits", "RequestError", "decode_image", "read_body", "read_images", "parse_texts",
    "HOW_TO_SEND", "IMAGE_FORMATS",
]

IMAGE_FORMATS = "JPEG, PNG, BMP, GIF or WebP"
HOW_TO_SEND = {
    "image": "send images as multipart/form-data files in the field `files` "
             "(curl -F files=@photo.jpg URL/predict)",
    "text": "send JSON {\"texts\": [\"first text\", ...]} with Content-Type: application/json",
}


class RequestError(InputError):
    """A request the server refuses: `status` is its HTTP status, the message says how to fix it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


# What each limit may be set to: beyond these a server would wait on one request for minutes.
LIMIT_RANGES = {
    "max_upload_bytes": (1, 2**30),
    "max_pixels": (1, 200_000_000),
    "max_request_pixels": (1, 2_000_000_000),
    "max_files": (1, 1024),
    "max_texts": (1, 10_000),
    "max_text_chars": (1, 1_000_000),
}


@dataclass(frozen=True)
class Limits:
    """What one request may hold. Every field is an int in `LIMIT_RANGES`.

    Attributes:
        max_upload_bytes: the most bytes in one request body (all files together). 20 MiB; at
            most 1 GiB.
        max_pixels: the most pixels (width x height) in one image, read from its header before
            decoding. 40 million; at most 200 million.
        max_request_pixels: the most pixels all the images of one request may hold together, as
            they will be decoded (a JPEG at the reduced scale it is decoded at), read from their
            headers before any is decoded. 100 million (about 3 s of decoding on one core); at
            most 2 billion.
        max_files: the most images in one request. 64; at most 1024.
        max_texts: the most texts in one request. 256; at most 10,000.
        max_text_chars: the most characters in one text. 20,000; at most 1 million.
    """

    max_upload_bytes: int = 20 * 2**20
    max_pixels: int = 40_000_000
    max_request_pixels: int = 100_000_000
    max_files: int = 64
    max_texts: int = 256
    max_text_chars: int = 20_000

    def __post_init__(self):
        for name, value in asdict(self).items():
            low, high = LIMIT_RANGES[name]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InputError(
                    f"`{name}` must be an int from {low:,} to {high:,}. Received: {name}={value!r}."
                )


# -- the body ---------------------------------------------------------------------------------


async def read_body(request, limit: int) -> bytes:
    """The body of a Starlette `request`, refused with 413 as soon as it is known to exceed
    `limit` bytes: from `Content-Length` before reading, or while reading (chunked bodies).
    Uvicorn discards the rest of a refused body."""
    from starlette.requests import ClientDisconnect

    too_large = (
        f"The request is larger than this server takes ({limit:,} bytes). Send fewer or smaller "
        "files per request."
    )
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, f"Content-Length {declared!r} is not a number of bytes.")
        if int(declared) > limit:
            raise RequestError(413, too_large.replace(" (", f" ({int(declared):,} bytes; at most "))
    chunks, total = [], 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise RequestError(413, too_large)
            chunks.append(chunk)
    except ClientDisconnect:
        raise RequestError(400, "The client closed the connection before sending the body.") \
            from None
    return b"".join(chunks)


# -- images -----------------------------------------------------------------------------------


def _open_image(data: bytes, name: str, max_pixels: int, image_size):
    """The Pillow image of an upload, its header read and its size checked (nothing decoded)."""
    from PIL import Image, UnidentifiedImageError

    too_big = (
        f"{name}: is larger than this server takes ({max_pixels:,} pixels). Resize it (for "
        f"example to {max(image_size) * 4} pixels on its longer side) and send it again."
    )
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RequestError(
            415, f"{name}: is not an image Pillow can read. Send {IMAGE_FORMATS} files."
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RequestError(413, too_big) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(400, f"{name}: the image is corrupt ({exc}). Send it again.") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise RequestError(413, too_big.replace(" (", f" ({width}x{height}; at most ", 1))
    return image


def decode_image(
    data: bytes, image_size, policy: str, *, max_pixels: int, name: str = "the image"
) -> np.ndarray:
    """Decodes an uploaded image for a model, as `transferkit.data.images.load_resized` decodes a
    file: EXIF orientation, any mode to RGB, JPEG draft scaling, then the model's resize.

    Args:
        data: the file's bytes.
        image_size: `(height, width)` of the model's input.
        policy: `"center_crop"` or `"stretch"`.
        max_pixels: refuse images with more pixels than this, before decoding them.
        name: how messages name the image (`files[0] 'cat.jpg'`).

    Returns:
        An RGB `uint8` array `(height, width, 3)`.

    Raises:
        RequestError: 415 not an image; 413 too many pixels; 400 corrupt or truncated.
    """
    from PIL import Image

    from transferkit.data.images import _resize_pil, decode_rgb

    size = (int(image_size[0]), int(image_size[1]))
    with _open_image(data, name, max_pixels, size) as image:
        try:
            rgb = decode_rgb(image, draft=size)  # as load_resized decodes files: same pixels
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise RequestError(
                400, f"{name}: the image is corrupt or truncated ({exc}). Send the whole file, "
                "or re-export it."
            ) from None
    return np.asarray(_resize_pil(rgb, size, policy), dtype=np.uint8)


def pixels_to_decode(blobs, image_size, limits: Limits) -> int:
    """The pixels the images `[(name, bytes)]` will be decoded to, from their headers (a JPEG
    at the reduced scale `decode_image` asks for); refuses the request (413) where one image or
    all of them together hold more than `limits` allow."""
    side = max(int(image_size[0]), int(image_size[1]))
    total = 0
    for name, data in blobs:
        with _open_image(data, name, limits.max_pixels, image_size) as image:
            if image.format == "JPEG":
                image.draft(None, (side, side))  # header only: sets the scale decoding will use
            total += image.size[0] * image.size[1]
    if total > limits.max_request_pixels:
        raise RequestError(
            413, f"The request's {len(blobs)} images hold {total:,} pixels to decode; this server "
            f"decodes at most {limits.max_request_pixels:,} per request. Send fewer images per "
            "request, or smaller ones."
        )
    return total


def _check_multipart_ends(content_type: str, body: bytes) -> None:
    """Refuses a multipart body cut short: without its closing boundary (RFC 2046) a parser
    quietly keeps the parts before the cut and drops the rest."""
    from python_multipart.multipart import parse_options_header

    boundary = parse_options_header(content_type)[1].get(b"boundary")
    if not boundary:
        return  # the form parser says the boundary is missing
    close = b"--" + boundary + b"--"
    if not (body.startswith(close) or b"\r\n" + close in body):
        raise RequestError(
            400, f"The multipart body is truncated or malformed: it does not end with its closing "
            f"boundary ({close.decode('latin-1')!r}), so files may be missing. Send the whole "
            "request again."
        )


async def _uploads(request, body: bytes, limits: Limits) -> list[tuple[str, bytes]]:
    """`[(name, bytes)]` of the files in the field `files` of a multipart body."""
    from starlette.exceptions import HTTPException
    from starlette.requests import Request

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    _check_multipart_ends(request.headers.get("content-type", ""), body)
    try:
        form = await Request(request.scope, replay).form(
            max_files=limits.max_files, max_fields=limits.max_files
        )
    except HTTPException as exc:
        if "Too many" in str(exc.detail):
            raise RequestError(
                413, f"The request holds more than {limits.max_files} files; this server takes "
                f"at most {limits.max_files} files per request. Send them in several requests."
            ) from None
        raise RequestError(
            400, f"The multipart body could not be read ({exc.detail}); {HOW_TO_SEND['image']}."
        ) from None
    try:
        others = sorted({key for key in form.keys() if key != "files"})
        uploads = form.getlist("files")
        if not uploads:
            held = f" (it holds {', '.join(map(repr, others))})" if others else ""
            raise RequestError(400, f"The request holds no files in the field `files`{held}; "
                                    f"{HOW_TO_SEND['image']}.")
        if others:
            raise RequestError(
                400, f"The request holds parts named {', '.join(map(repr, others))} beside "
                f"`files`; this server reads only `files`, so their contents would be lost. "
                f"Send every image in the field `files`."
            )
        blobs = []
        for index, upload in enumerate(uploads):
            if isinstance(upload, str):
                raise RequestError(
                    400, f"files[{index}] is a text field, not a file; {HOW_TO_SEND['image']}."
                )
            blobs.append((f"files[{index}] {upload.filename!r}", await upload.read()))
    finally:
        await form.close()
    return blobs


async def read_images(request, body: bytes, *, predictor, limits: Limits, pool) -> list:
    """The images of a multipart body, decoded for `predictor`.

    Args:
        request: the Starlette request (its headers and scope).
        body: its body, read by `read_body`.
        predictor: what the images are for (`image_size`, `resize_policy`).
        limits: the server's `Limits`.
        pool: the `FairPool` that decodes, taking turns with the other requests.

    Returns:
        RGB `uint8` arrays, one per file, in order.

    Raises:
        RequestError: the body or one of its images cannot be used; the first one is named.
    """
    blobs = await _uploads(request, body, limits)
    # The headers first: a request over the pixel budget decodes nothing.
    await pool.run(functools.partial(pixels_to_decode, blobs, predictor.image_size, limits))
    return await pool.map([
        functools.partial(decode_image, data, predictor.image_size, predictor.resize_policy,
                          max_pixels=limits.max_pixels, name=name)
        for name, data in blobs
    ])


# -- texts ------------------------------------------------------------------------------------


def _unique_keys(pairs):
    """A JSON object's keys, refused where one repeats: `json` would keep the last quietly."""
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise RequestError(
            400, f"The JSON repeats the key {repeated[0]!r}; a parser keeps only one of them. "
            "Send each key once."
        )
    return dict(pairs)


def _load_json(body: bytes) -> dict:
    try:
        return json.loads(body, object_pairs_hook=_unique_keys)
    except RequestError:
        raise
    except RecursionError:
        raise RequestError(
            400, f"The JSON is nested too deeply to read; {HOW_TO_SEND['text']}."
        ) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"The body is not valid JSON ({exc}); {HOW_TO_SEND['text']}.") \
            from None


def _check_text(index: int, text, limits: Limits) -> None:
    if not isinstance(text, str):
        raise RequestError(
            400, f"texts[{index}] is a {type(text).__name__}; every text must be a string."
        )
    if not text.strip():
        raise RequestError(400, f"texts[{index}] is empty: send text to classify.")
    if len(text) > limits.max_text_chars:
        raise RequestError(
            413, f"texts[{index}] has {len(text):,} characters; this server takes at most "
            f"{limits.max_text_chars:,} per text. Shorten it."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800": valid JSON, not text
        raise RequestError(
            400, f"texts[{index}] is not valid Unicode: character {exc.start} is a lone "
            f"surrogate ({text[exc.start]!a}), half of a UTF-16 pair. Send the text as UTF-8, "
            "or escape a character beyond U+FFFF as its whole pair (\\ud83d\\ude00)."
        ) from None


def parse_texts(body: bytes, limits: Limits) -> list[str]:
    """The texts of a JSON body `{"texts": [...]}`, each checked before any reaches the model."""
    payload = _load_json(body)
    if not isinstance(payload, dict) or "texts" not in payload:
        raise RequestError(400, f"The JSON has no \"texts\" list; {HOW_TO_SEND['text']}.")
    others = sorted(key for key in payload if key != "texts")
    if others:
        raise RequestError(
            400, f"The JSON holds {', '.join(map(repr, others))} beside \"texts\"; this server "
            "reads only \"texts\", so the rest would be lost. Send {\"texts\": [...]} alone."
        )
    texts = payload["texts"]
    if isinstance(texts, str):
        raise RequestError(
            400, "\"texts\" is one string; it must be a list of strings: {\"texts\": [\"...\"]}."
        )
    if not isinstance(texts, list):
        raise RequestError(
            400, f"\"texts\" is a {type(texts).__name__}; it must be a list of strings."
        )
    if not texts:
        raise RequestError(400, "\"texts\" is empty: send at least one text.")
    if len(texts) > limits.max_texts:
        raise RequestError(
            413, f"{len(texts):,} texts in one request; this server takes at most "
            f"{limits.max_texts:,}. Send them in several requests."
        )
    for index, text in enumerate(texts):
        _check_text(index, text, limits)
    return texts
