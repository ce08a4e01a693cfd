"""What the fixture scripts share: the causal depthwise conv1d (docs/design.md), and the writer of
the binary fixtures. Writes the binary fixtures that tests/fixture.h reads: an 8-byte magic, version 1 and the array
count (little-endian uint32), then per array: name length (uint32), name (ASCII), ndim (uint32),
shape (int64 each), and the values as little-endian float64."""
import os
import struct

import torch


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


def causal_conv1d(x, weight, bias=None, apply_silu=False):
    # docs/design.md: y[t, c] = bias[c] + sum_j weight[c, j] * x[t - (k-1) + j, c], zero before t = 0.
    b, l, d = x.shape
    k = weight.shape[1]
    y = torch.zeros(b, l, d, dtype=x.dtype)
    for t in range(l):
        for j in range(k):
            s = t - (k - 1) + j
            if s >= 0:
                y[:, t, :] = y[:, t, :] + weight[:, j] * x[:, s, :]
    if bias is not None:
        y = y + bias
    if apply_silu:
        y = y * torch.sigmoid(y)
    return y
