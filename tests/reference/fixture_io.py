"""Writes the binary fixtures that tests/fixture.h reads: an 8-byte magic, version 1 and the array
count (little-endian uint32), then per array: name length (uint32), name (ASCII), ndim (uint32),
shape (int64 each), and the values as little-endian float64."""
import os
import struct


def write_fixture(filename, magic, arrays):
    """arrays: list of (name, torch tensor); written to tests/fixtures/<filename>. Returns the path."""
    assert len(magic) == 8
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", filename)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "wb") as f:
        f.write(magic)
        f.write(struct.pack("<II", 1, len(arrays)))
        for name, t in arrays:
            nb = name.encode("ascii")
            f.write(struct.pack("<I", len(nb)))
            f.write(nb)
            f.write(struct.pack("<I", t.dim()))
            f.write(struct.pack(f"<{t.dim()}q", *t.shape))
            f.write(t.detach().numpy().astype("<f8").tobytes())
    return out
