#!/usr/bin/env python3
"""Writes tests/fixtures/scan_fixture.bin: inputs, outputs and every gradient of the selective scan
and the causal depthwise conv1d, computed in float64 by PyTorch autograd from the math in docs/design.md
sections 2 and 3 (a plain loop over time; nothing here is taken from the C++ code); and
tests/fixtures/scan_state_fixture.bin (magic b"MGSTATFX", same format): the same with initial states,
the scan starting from initial_state (b, d, n) and the conv reading initial_state (b, d, k-1) as its
inputs before t = 0, with the conv's final state and the gradients of the initial states.

Not part of the build; the fixture is committed and the tests never need PyTorch. Run with
    /usr/bin/python3 tests/reference/make_scan_fixture.py      (Debian: apt-get install python3-torch)

File format (little-endian):
    8 bytes  magic b"MGSCANFX"
    u32      version (1)
    u32      number of arrays
    then per array: u32 name length, name (ASCII), u32 ndim, i64 dims[ndim], f64 data[numel] (row-major)
Arrays are named "<case>.<what>": inputs (u, delta, A, B, C, D, z, delta_bias / x, weight, bias),
"flags" (scan: [delta_softplus, return_last_state]; conv: [apply_silu]), outputs ("y", "last_state"),
the output gradients used ("dy", "dlast"), and "grad.<input>" for every input. In the second file,
"initial_state" is an input like the others, and the conv cases add "final_state" and its gradient
"dfinal".
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import causal_conv1d, conv_final_state, selective_scan, write_fixture  # noqa: E402

torch.manual_seed(1234)
DT = torch.float64


arrays = []


def put(name, t):
    arrays.append((name, t.detach().to(DT).contiguous()))


def scan_case(name, b, l, d, n, with_D, with_z, with_bias, delta_softplus, delta_lo_hi=None, with_h0=False):
    ins = {
        "u": torch.randn(b, l, d, dtype=DT),
        "delta": (torch.randn(b, l, d, dtype=DT) if delta_softplus
                  else torch.empty(b, l, d, dtype=DT).uniform_(*delta_lo_hi)),
        "A": -torch.empty(d, n, dtype=DT).uniform_(0.2, 2.0),
        "B": torch.randn(b, l, n, dtype=DT),
        "C": torch.randn(b, l, n, dtype=DT),
    }
    if with_D:
        ins["D"] = torch.randn(d, dtype=DT)
    if with_z:
        ins["z"] = torch.randn(b, l, d, dtype=DT)
    if with_bias:
        ins["delta_bias"] = torch.empty(d, dtype=DT).uniform_(-1, 1)
    if with_h0:
        ins["initial_state"] = torch.randn(b, d, n, dtype=DT)
    for v in ins.values():
        v.requires_grad_(True)
    y, last = selective_scan(ins["u"], ins["delta"], ins["A"], ins["B"], ins["C"], ins.get("D"), ins.get("z"),
                             ins.get("delta_bias"), delta_softplus, ins.get("initial_state"))
    dy = torch.randn_like(y)
    dlast = torch.randn_like(last)
    ((y * dy).sum() + (last * dlast).sum()).backward()
    for k, v in ins.items():
        put(f"{name}.{k}", v)
    put(f"{name}.flags", torch.tensor([float(delta_softplus), 1.0]))
    put(f"{name}.y", y)
    put(f"{name}.last_state", last)
    put(f"{name}.dy", dy)
    put(f"{name}.dlast", dlast)
    for k, v in ins.items():
        put(f"{name}.grad.{k}", v.grad)


def conv_case(name, b, l, d, k, with_bias, apply_silu, with_state=False):
    ins = {"x": torch.randn(b, l, d, dtype=DT), "weight": torch.randn(d, k, dtype=DT)}
    if with_bias:
        ins["bias"] = torch.randn(d, dtype=DT)
    if with_state:
        ins["initial_state"] = torch.randn(b, d, k - 1, dtype=DT)
    for v in ins.values():
        v.requires_grad_(True)
    y = causal_conv1d(ins["x"], ins["weight"], ins.get("bias"), apply_silu, ins.get("initial_state"))
    dy = torch.randn_like(y)
    loss = (y * dy).sum()
    if with_state:
        final = conv_final_state(ins["x"], k, ins["initial_state"])
        dfinal = torch.randn_like(final)
        loss = loss + (final * dfinal).sum()
    loss.backward()
    for key, v in ins.items():
        put(f"{name}.{key}", v)
    put(f"{name}.flags", torch.tensor([float(apply_silu)]))
    put(f"{name}.y", y)
    put(f"{name}.dy", dy)
    if with_state:
        put(f"{name}.final_state", final)
        put(f"{name}.dfinal", dfinal)
    for key, v in ins.items():
        put(f"{name}.grad.{key}", v.grad)


# Scan: every optional input, softplus, two chunks of time steps (the C++ chunk is 128 steps, but
# the fixture does not depend on it), a channel count that is not a multiple of the vector width.
scan_case("scan_full", b=2, l=150, d=5, n=4, with_D=True, with_z=True, with_bias=True, delta_softplus=True)
# Scan: no optional input, no softplus (positive delta), n = 1.
scan_case("scan_bare", b=2, l=7, d=3, n=1, with_D=False, with_z=False, with_bias=False, delta_softplus=False,
          delta_lo_hi=(0.05, 0.8))
# Scan: n = 16, d = 17, D and delta_bias but no z.
scan_case("scan_n16", b=1, l=20, d=17, n=16, with_D=True, with_z=False, with_bias=True, delta_softplus=True)
conv_case("conv_k4", b=2, l=10, d=5, k=4, with_bias=True, apply_silu=True)
conv_case("conv_k3", b=1, l=6, d=3, k=3, with_bias=False, apply_silu=False)

out = write_fixture("scan_fixture.bin", b"MGSCANFX", arrays)
print(f"wrote {out}: {len(arrays)} arrays, {os.path.getsize(out)} bytes")

# With initial states, in their own file (so that the arrays above stay as they were).
torch.manual_seed(4321)
arrays = []
# Scan from an initial state: every optional input, softplus, past one 128-step chunk (and two of
# the CUDA kernel's 64), d not a multiple of the vector width.
scan_case("scan_h0_full", b=1, l=131, d=3, n=3, with_D=True, with_z=True, with_bias=True, delta_softplus=True,
          with_h0=True)
# Scan from an initial state, l = 1, no optional input, no softplus.
scan_case("scan_h0_bare", b=2, l=1, d=3, n=2, with_D=False, with_z=False, with_bias=False, delta_softplus=False,
          delta_lo_hi=(0.05, 0.8), with_h0=True)
conv_case("conv_state_k4", b=2, l=6, d=3, k=4, with_bias=True, apply_silu=True, with_state=True)
# l = 2 < k - 1 = 3: the final state keeps the newest entry of the initial state.
conv_case("conv_state_short", b=2, l=2, d=3, k=4, with_bias=False, apply_silu=False, with_state=True)

out = write_fixture("scan_state_fixture.bin", b"MGSTATFX", arrays)
print(f"wrote {out}: {len(arrays)} arrays, {os.path.getsize(out)} bytes")
