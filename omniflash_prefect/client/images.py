"""A local image about to be uploaded: read and checked before anything is sent.

The upload endpoint takes a JPEG, PNG, WebP or GIF of up to 20 MB. A file that is missing, of
another type or too large is refused here, with :class:`InvalidImageFileError` naming the file,
so a wrong path never costs a request (nor, in a flow, a video submitted without its image).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from omniflash_prefect.core import protocol
from omniflash_prefect.errors import InvalidImageFileError


@dataclass(frozen=True)
class ImageFile:
    """A checked local image: its absolute path, its bytes and the type its bytes say it is."""

    path: Path
    content: bytes
    content_type: str

    @property
    def sha256(self) -> str:
        """The hex SHA-256 of the bytes: what identifies the image, whatever its name."""
        return hashlib.sha256(self.content).hexdigest()


def read_image_file(path: str | os.PathLike[str]) -> ImageFile:
    """Read the image at ``path`` (made absolute here, against the current directory) and check
    it as the upload endpoint would; raises :class:`InvalidImageFileError` if it would refuse it.

    The type is read from the bytes, not the file name, as the provider does.
    """
    image = Path(path).expanduser().resolve()
    if not image.is_file():
        raise InvalidImageFileError(str(image), "is not a readable file")
    size = image.stat().st_size
    if size > protocol.MAX_IMAGE_UPLOAD_BYTES:
        raise InvalidImageFileError(str(image), f"is {size} bytes, over the 20 MB upload limit")
    try:
        content = image.read_bytes()
    except OSError as exc:
        raise InvalidImageFileError(str(image), f"cannot be read ({exc.strerror})") from None
    content_type = protocol.sniff_image_type(content[:16])
    if content_type is None:
        raise InvalidImageFileError(str(image), "is not a JPEG, PNG, WebP or GIF image")
    return ImageFile(image, content, content_type)
