"""The competition's run-length code for masks.

Pixels are numbered from 1, top to bottom and then left to right (column-major,
as Fortran and MATLAB store arrays); a mask is written as "start length"
pairs of its salt runs, and an empty mask as an empty string.
"""
import numpy as np


def encode(mask):
    """The run-length code of a 2-D mask (nonzero = salt)."""
    pixels = np.asarray(mask).flatten(order="F") != 0
    # runs start where a pixel differs from the one before it (padding with
    # background on both ends makes the first and last runs well defined)
    edges = np.flatnonzero(np.diff(np.concatenate([[False], pixels, [False]])))
    starts, ends = edges[0::2], edges[1::2]
    return " ".join(f"{start + 1} {end - start}" for start, end in zip(starts, ends))


def decode(code, shape):
    """A uint8 0/1 mask of ``shape`` (height, width) from its run-length code."""
    height, width = shape
    pixels = np.zeros(height * width, dtype=np.uint8)
    numbers = [int(number) for number in code.split()]
    if len(numbers) % 2:
        raise ValueError(f"a run-length code needs start/length pairs, got {len(numbers)} numbers")
    for start, length in zip(numbers[0::2], numbers[1::2]):
        if start < 1 or length < 1 or start - 1 + length > pixels.size:
            raise ValueError(f"the run {start} {length} does not fit a {height}x{width} mask")
        pixels[start - 1:start - 1 + length] = 1
    return pixels.reshape((height, width), order="F")
