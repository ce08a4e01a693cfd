#!/usr/bin/env python3
"""Writes tests/fixtures/mamba_fixture.bin: a whole small Mamba language model (weights, a batch of
tokens and targets, the logits, the mean cross-entropy loss and the gradient of that loss with
respect to every parameter), computed in float64 by PyTorch autograd from the math of docs/design.md
sections 2, 3 and 4 (the selective scan and the causal conv1d are plain loops over time; nothing
here is taken from the C++ code). It is the whole-model counterpart of make_scan_fixture.py, as
llm.c's debug state is for GPT-2. tests/test_mamba_fixture.cpp checks the C++ MambaLM against it.

Not part of the build; the fixture is committed and the tests never need PyTorch. Run with
    /usr/bin/python3 tests/reference/make_mamba_fixture.py      (Debian: apt-get install python3-torch)

File format: the one of make_scan_fixture.py (little-endian) with its own magic number:
    8 bytes  magic b"MGMAMBFX"
    u32      version (1)
    u32      number of arrays
    then per array: u32 name length, name (ASCII), u32 ndim, i64 dims[ndim], f64 data[numel] (row-major)
Arrays:
    "config"           [vocab_size, d_model, n_layer, d_state, d_conv, expand, dt_rank, norm_eps]
    "tokens", "targets" (b, l), byte values stored as float64
    "logits"           (b, l, vocab_size)
    "loss"             (1,) mean cross-entropy in nats over the b * l targets
    "param.<name>"     every parameter, named as Hugging Face's Mamba (docs/design.md#checkpoints-and-the-run-folder)
    "grad.<name>"      d loss / d parameter, same shapes

Weights: the initialisation of docs/design.md with noise on everything that it initialises to a constant (norm
weights, A_log, D), an embedding of std 0.3 instead of 0.02 (so the logits are not near-uniform and
the loss depends strongly on every path), and dt drawn from [1e-2, 1] rather than [1e-3, 1e-1]
(so the recurrence forgets noticeably within the sequence). The embedding is tied to the head, so
its gradient has both contributions.
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fixture_io import causal_conv1d, selective_scan, silu, write_fixture  # noqa: E402

torch.manual_seed(20240611)
torch.set_num_threads(1)  # the same bytes on every run (threaded reductions round differently)
DT = torch.float64

# A small config: the fixture stays under ~300 KB. dt_rank = ceil(16 / 16) = 1.
CFG = dict(vocab_size=256, d_model=16, n_layer=2, d_state=8, d_conv=4, expand=2, norm_eps=1e-5)
CFG["dt_rank"] = math.ceil(CFG["d_model"] / 16)
B_, L_ = 2, 24


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def mixer(x, p, pre):
    # docs/design.md#the-mamba-block, the Mamba block's mixer.
    di, n, R = CFG["expand"] * CFG["d_model"], CFG["d_state"], CFG["dt_rank"]
    xz = x @ p[pre + "in_proj.weight"].T  # (b, l, 2 di)
    xi, z = xz.split([di, di], -1)
    xc = silu(causal_conv1d(xi, p[pre + "conv1d.weight"][:, 0, :], p[pre + "conv1d.bias"]))
    x_dbl = xc @ p[pre + "x_proj.weight"].T  # (b, l, R + 2n)
    dt, Bm, Cm = x_dbl.split([R, n, n], -1)
    delta = dt @ p[pre + "dt_proj.weight"].T  # (b, l, di); the bias goes in as delta_bias
    A = -torch.exp(p[pre + "A_log"])
    y, _ = selective_scan(xc, delta, A, Bm, Cm, p[pre + "D"], z, p[pre + "dt_proj.bias"], delta_softplus=True)
    return y @ p[pre + "out_proj.weight"].T


def lm_forward(tokens, p):
    eps = CFG["norm_eps"]
    emb = p["backbone.embeddings.weight"]
    h = emb[tokens]  # (b, l, d_model)
    residual = torch.zeros_like(h)
    for i in range(CFG["n_layer"]):
        pre = f"backbone.layers.{i}."
        residual = residual + h
        h = mixer(rmsnorm(residual, p[pre + "norm.weight"], eps), p, pre + "mixer.")
    return rmsnorm(residual + h, p["backbone.norm_f.weight"], eps) @ emb.T  # tied head


def uniform(shape, bound):
    return torch.empty(*shape, dtype=DT).uniform_(-bound, bound)


def init_params():
    V, d, L, n, k = CFG["vocab_size"], CFG["d_model"], CFG["n_layer"], CFG["d_state"], CFG["d_conv"]
    di, R = CFG["expand"] * d, CFG["dt_rank"]
    p = {"backbone.embeddings.weight": 0.3 * torch.randn(V, d, dtype=DT)}
    for i in range(L):
        pre = f"backbone.layers.{i}."
        p[pre + "norm.weight"] = 1 + 0.2 * torch.randn(d, dtype=DT)
        m = pre + "mixer."
        p[m + "in_proj.weight"] = uniform((2 * di, d), 1 / math.sqrt(d))
        p[m + "conv1d.weight"] = uniform((di, 1, k), 1 / math.sqrt(k))
        p[m + "conv1d.bias"] = uniform((di,), 1 / math.sqrt(k))
        p[m + "x_proj.weight"] = uniform((R + 2 * n, di), 1 / math.sqrt(di))
        p[m + "dt_proj.weight"] = uniform((di, R), R ** -0.5)
        dt = torch.exp(torch.empty(di, dtype=DT).uniform_(math.log(1e-2), math.log(1.0))).clamp(min=1e-4)
        p[m + "dt_proj.bias"] = dt + torch.log(-torch.expm1(-dt))  # inverse softplus
        p[m + "A_log"] = torch.log(torch.arange(1, n + 1, dtype=DT)).repeat(di, 1) + 0.1 * torch.randn(di, n, dtype=DT)
        p[m + "D"] = 1 + 0.3 * torch.randn(di, dtype=DT)
        p[m + "out_proj.weight"] = uniform((d, di), 1 / math.sqrt(di)) / math.sqrt(L)
    p["backbone.norm_f.weight"] = 1 + 0.2 * torch.randn(d, dtype=DT)
    return p


params = init_params()
for t in params.values():
    t.requires_grad_(True)
tokens = torch.randint(0, CFG["vocab_size"], (B_, L_))
targets = torch.randint(0, CFG["vocab_size"], (B_, L_))
logits = lm_forward(tokens, params)  # (b, l, V)
loss = torch.nn.functional.cross_entropy(logits.reshape(-1, CFG["vocab_size"]), targets.reshape(-1))
loss.backward()

# Self-check of the reference: a few central differences on the float64 loss.
with torch.no_grad():
    for name in ["backbone.layers.0.mixer.A_log", "backbone.layers.1.mixer.dt_proj.bias", "backbone.embeddings.weight",
                 "backbone.layers.0.mixer.conv1d.weight"]:
        t = params[name].view(-1)
        for j in [0, t.numel() // 2, t.numel() - 1]:
            old = t[j].item()
            t[j] = old + 1e-6
            lp = torch.nn.functional.cross_entropy(lm_forward(tokens, params).reshape(-1, CFG["vocab_size"]), targets.reshape(-1))
            t[j] = old - 1e-6
            lm = torch.nn.functional.cross_entropy(lm_forward(tokens, params).reshape(-1, CFG["vocab_size"]), targets.reshape(-1))
            t[j] = old
            fd = (lp - lm).item() / 2e-6
            an = params[name].grad.view(-1)[j].item()
            assert abs(fd - an) <= 1e-6 * max(1.0, abs(an)) + 1e-9, (name, j, fd, an)

arrays = []


def put(name, t):
    arrays.append((name, t.detach().to(DT).contiguous()))


put("config", torch.tensor([CFG["vocab_size"], CFG["d_model"], CFG["n_layer"], CFG["d_state"], CFG["d_conv"],
                            CFG["expand"], CFG["dt_rank"], CFG["norm_eps"]], dtype=DT))
put("tokens", tokens)
put("targets", targets)
put("logits", logits)
put("loss", loss.reshape(1))
for name, t in params.items():
    put("param." + name, t)
for name, t in params.items():
    put("grad." + name, t.grad)

out = write_fixture("mamba_fixture.bin", b"MGMAMBFX", arrays)
print(f"wrote {out}: {len(arrays)} arrays, {os.path.getsize(out)} bytes; loss {loss.item():.6f}")
