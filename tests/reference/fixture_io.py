"""What the fixture scripts share: the reference selective scan and causal depthwise conv1d
(docs/design.md), softplus and silu, and the writer of
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


def causal_conv1d(x, weight, bias=None, apply_silu=False, initial_state=None):
    # docs/design.md: y[t, c] = bias[c] + sum_j weight[c, j] * x[t - (k-1) + j, c], zero before t = 0,
    # or, with initial_state (b, d, k-1), x[s, c] = initial_state[:, c, s + k-1] for s = -(k-1) .. -1.
    b, l, d = x.shape
    k = weight.shape[1]
    y = torch.zeros(b, l, d, dtype=x.dtype)
    for t in range(l):
        for j in range(k):
            s = t - (k - 1) + j
            if s >= 0:
                y[:, t, :] = y[:, t, :] + weight[:, j] * x[:, s, :]
            elif initial_state is not None:
                y[:, t, :] = y[:, t, :] + weight[:, j] * initial_state[:, :, s + k - 1]
    if bias is not None:
        y = y + bias
    if apply_silu:
        y = y * torch.sigmoid(y)
    return y


def conv_final_state(x, k, initial_state=None):
    """docs/design.md: the last k-1 inputs of [initial_state, x] along time as (b, d, k-1), oldest first
    (zeros stand for a missing initial state)."""
    b, l, d = x.shape
    prev = initial_state if initial_state is not None else torch.zeros(b, d, k - 1, dtype=x.dtype)
    window = torch.cat([prev, x.transpose(1, 2)], 2)  # (b, d, k-1+l)
    return window[:, :, l:]


def softplus(x):
    # docs/design.md: log1p(exp(x)), and x itself where x > 20
    return torch.where(x > 20, x, torch.log1p(torch.exp(torch.clamp(x, max=20))))


def silu(x):
    return x * torch.sigmoid(x)


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, initial_state=None):
    """The reference scan (docs/design.md#the-selective-scan), a plain loop over time from h = 0, or
    from initial_state (b, d, n) when given. Returns y (b, l, d) and the last state (b, d, n). Both
    fixture scripts use this one."""
    b, l, d = u.shape
    n = A.shape[1]
    dt = delta + delta_bias if delta_bias is not None else delta  # (b, l, d)
    if delta_softplus:
        dt = softplus(dt)
    h = initial_state if initial_state is not None else torch.zeros(b, d, n, dtype=u.dtype)
    ys = []
    for t in range(l):
        dtt = dt[:, t, :, None]  # (b, d, 1)
        h = torch.exp(dtt * A) * h + dtt * B[:, t, None, :] * u[:, t, :, None]  # (b, d, n)
        ys.append((h * C[:, t, None, :]).sum(-1))  # (b, d)
    y = torch.stack(ys, 1)  # (b, l, d)
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * (z * torch.sigmoid(z))
    return y, h
