#!/usr/bin/env python3
"""PyTorch peer of `mambagrad bench train`: the same Mamba LM, init, batch and training step, on the CPU or a GPU.

    /usr/bin/python3 bench/torch_peer.py --preset small --batch 16 --seq 256 --steps 5 --threads 2
    /usr/bin/python3 bench/torch_peer.py --preset base --batch 16 --seq 256 --steps 20 --device cuda

The model is docs/design.md#the-mamba-block written as a careful PyTorch user would (no custom kernels): embedding;
per layer residual add + RMSNorm + mixer (in_proj, split, causal depthwise nn.Conv1d with
groups=d_inner and padding d_conv-1 then sliced, silu, x_proj, dt/B/C split, dt_proj + softplus,
selective scan, D skip, silu(z) gate, out_proj); final RMSNorm; head tied to the embedding. The
selective scan loops over time on views from unbind(), so the backward of each step's slice is not a
full-size gradient (the backward of unbind stacks them once), in one of two ways (--scan):
  precomputed  exp(delta*A) and delta*B*u for all steps first (two (b, l, d_inner, n) tensors), then the loop;
  loop         each step's exp(delta_t*A) and (delta_t*u_t)*B_t computed inside the loop, which on some CPUs
               is faster (no large tensors written and read back).
`mambagrad bench train --peer` runs both and compares with the faster. Like any autograd scan, either keeps
O(b*l*d_inner*n) tensors for the backward (mambagrad's fused scan does not; that is part of what the
benchmark shows).

--autocast: the forward and the loss under torch.autocast(device, dtype=torch.bfloat16), PyTorch's mixed
precision (matmuls, bmm and the conv in bf16; parameters and optimizer in float32), the peer of
`mambagrad bench train --precision bf16`.

Init as docs/design.md#initialisation (nn.Linear / nn.Conv1d defaults, dt_proj as the official Mamba, A_log =
log(1..n), D = 1, out_proj / sqrt(n_layer), embedding N(0, 0.02)). The step: sample a batch, forward,
loss.item(), zero_grad(set_to_none=True), backward, clip_grad_norm_(1.0), AdamW(lr 1e-3, betas
(0.9, 0.95), eps 1e-8, weight decay 0.1 on matrices only). The learning rate is constant.

--device cuda: the model and optimizer on the GPU (AdamW with fused=True, PyTorch's fastest
update), batches sampled on the host and copied, as mambagrad does. Device work is asynchronous, so
every clock read follows a wait for the device: loss.item() ends the forward, torch.cuda.synchronize()
ends the backward and the update (the same points as `mambagrad bench train --device cuda`). Memory:
peak_dev_mb is torch.cuda.max_memory_allocated() after reset_peak_memory_stats() before the model is
built, minus what was allocated then (tensors only; the caching allocator's reserve is not counted,
as mambagrad's figure does not count its cache). TF32 stays off (PyTorch's default for float32
matmuls, and mambagrad's).

Prints one line that `mambagrad bench train --peer` parses:

    torch_peer preset=small tokens_per_s=... ms_per_step=... peak_rss_mb=... base_rss_mb=... ...

(peak_rss_mb: getrusage ru_maxrss of this process; base_rss_mb: its RSS before the model is built,
i.e. the interpreter and torch). Prints `torch_peer skipped: REASON` and exits 0 when torch is
missing.

--generate: what `mambagrad bench generate --peer` compares with. Under torch.inference_mode(), the
prompt (--batch rows of --prompt-bytes random bytes) through the model's forward (the prefill), then
--tokens greedy tokens per row through the recurrent step as a PyTorch user writes it (mamba.py's
step: a cached conv window and SSM state per layer, the conv as a sum over the window, one
exp(dt A) per step), each pick read back with .tolist() as a sampler would. Prints

    torch_peer preset=small batch=1 prefill_tokens_per_s=... gen_tokens_per_s=... ms_per_step=...

--matmul "M,N,K,TA,TB;...": what `mambagrad bench matmul --peer` compares with: C (M, N) = op(A) op(B) by
torch.mm into a preallocated C (out=), op(A) = A.t() of A stored (K, M) when TA is 1, op(B) = B.t() of B
stored (N, K) when TB is 1 (how linear's forward and backward hand their operands to the BLAS), once in
float32 and once with A, B and C in bfloat16 (PyTorch's bf16 matmul: oneDNN where the CPU has a bf16
instruction, else its own fallback), under torch.inference_mode(). Each figure is the best of --reps trials
of at least 20 ms after a warm-up call (one trial when a call takes over half a second). Prints

    torch_peer fp32_0=GFLOP/s bf16_0=GFLOP/s fp32_1=... torch=... blas=... capability=...

--threads T also limits the BLAS's own threads (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and MKL_NUM_THREADS,
unless the environment sets them): Debian's torch multiplies float32 through OpenBLAS, whose thread pool
torch.set_num_threads does not size, so without them a 1-thread peer would multiply on every core.

Checks (not timed):
    --load RUN --check-logits FILE   load RUN/model.safetensors (as written by `mambagrad train`) and
                                     compare the logits with `mambagrad logits --run RUN --out FILE`
                                     (needs the `safetensors` package; skipped if missing)
    --data enwik8.zip --steps 20 --warmup 0 --verbose
                                     loss per step: about ln(256) = 5.55 at first, then falling
"""
import argparse
import gzip
import io
import math
import os
import resource
import sys
import time
import zipfile

PRESETS = {"tiny": (64, 2), "small": (256, 4), "base": (512, 8)}  # d_model, n_layer (models/mamba.cpp)


def current_rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: kilobytes


def read_bytes(path):
    """The bytes of a file: the `enwik8` (or only) member of a zip, a gunzipped gzip, or the raw file."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:4] == b"PK\x03\x04":
        with zipfile.ZipFile(io.BytesIO(raw)) as z:
            names = z.namelist()
            return z.read("enwik8" if "enwik8" in names else names[0])
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    return raw


def cpu_blas():
    """The library behind libblas.so.3 in this process (Debian's torch multiplies through it, whichever BLAS
    the system's alternatives select): openblas, mkl, blis, reference (libblas3), or unknown."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libblas.so" in line}
    except OSError:
        return "unknown"
    for path in paths:
        for name in ("openblas", "mkl", "blis"):
            if name in path:
                return name
    return "reference" if paths else "unknown"


def cpu_capability(torch):
    """The SIMD level PyTorch's CPU kernels dispatch to (torch.__config__.show()'s "CPU capability usage")."""
    for line in torch.__config__.show().splitlines():
        if "CPU capability usage:" in line:
            return line.split(":", 1)[1].strip()
    return "unknown"


def run_matmul(args, torch):
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.matmul.split(";") if s]
    for shape in shapes:
        if len(shape) != 5 or min(shape[:3]) < 1:
            raise SystemExit(f"torch_peer: --matmul wants M,N,K,TA,TB with M, N, K >= 1, got {shape}")

    def best_seconds(f):
        t0 = time.perf_counter()
        f()  # warm-up
        trials = args.reps if time.perf_counter() - t0 < 0.5 else 1
        best = float("inf")
        for _ in range(max(1, trials)):
            n, t0 = 0, time.perf_counter()
            while True:
                f()
                n += 1
                elapsed = time.perf_counter() - t0
                if elapsed >= 0.02:
                    break
            best = min(best, elapsed / n)
        return best

    gen = torch.Generator().manual_seed(1)
    figures = {}
    with torch.inference_mode():
        for i, (m, n, k, ta, tb) in enumerate(shapes):
            a = torch.rand((k, m) if ta else (m, k), generator=gen) * 2 - 1
            b = torch.rand((n, k) if tb else (k, n), generator=gen) * 2 - 1
            line = f"matmul {i + 1}/{len(shapes)}: {m}x{n}x{k}"
            for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
                A, B = a.to(dtype), b.to(dtype)
                op_a, op_b = (A.t() if ta else A), (B.t() if tb else B)
                C = torch.empty((m, n), dtype=dtype)
                gflops = 2.0 * m * n * k / best_seconds(lambda: torch.mm(op_a, op_b, out=C)) / 1e9
                figures[f"{name}_{i}"] = gflops
                line += f" {name} {gflops:.1f}"
            print(line + " GFLOP/s", flush=True)
    print("torch_peer " + " ".join(f"{key}={value:.2f}" for key, value in figures.items()) +
          f" torch={torch.__version__} blas={cpu_blas()} capability={cpu_capability(torch).replace(' ', '_')}",
          flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="small", choices=sorted(PRESETS))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5, help="timed steps")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    ap.add_argument("--data", default="", help="byte file (enwik8 zip, gzip or raw): batches from its first 90%%; "
                                                "default random bytes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda:N)")
    ap.add_argument("--verbose", action="store_true", help="print the loss of every step")
    ap.add_argument("--scan", default="precomputed", choices=["precomputed", "loop"],
                    help="how the selective scan is written (see the module docstring)")
    ap.add_argument("--autocast", action="store_true", help="forward and loss under torch.autocast(bfloat16)")
    ap.add_argument("--load", default="", help="mambagrad run folder: load its model.safetensors")
    ap.add_argument("--check-logits", default="", help="with --load: compare with `mambagrad logits` output, exit")
    ap.add_argument("--generate", action="store_true", help="time prefill and the recurrent step instead of training")
    ap.add_argument("--prompt-bytes", type=int, default=4096, help="--generate: prompt length")
    ap.add_argument("--tokens", type=int, default=300, help="--generate: decoded tokens per row")
    ap.add_argument("--matmul", default="", help='time torch.mm on "M,N,K,TA,TB;..." instead of training')
    ap.add_argument("--reps", type=int, default=3, help="--matmul: timed trials per shape (the best is printed)")
    args = ap.parse_args()

    if args.threads > 0:  # before torch loads its BLAS: see --threads in the module docstring
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            if not os.environ.get(var):
                os.environ[var] = str(args.threads)

    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError as e:
        print(f"torch_peer skipped: torch is not importable ({e})")
        return 0

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    blas = "cublas" if gpu else cpu_blas()
    if blas == "reference":
        print("torch_peer note: this torch multiplies with the reference BLAS (libblas3), several times "
              "slower than OpenBLAS: on Debian, apt-get install libopenblas0-pthread", flush=True)
    if gpu and not torch.cuda.is_available():
        print("torch_peer skipped: this torch has no CUDA device (torch.cuda.is_available() is False)")
        return 0
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = False  # full float32, as mambagrad by default
        torch.backends.cudnn.allow_tf32 = False

    def sync():
        if gpu:
            torch.cuda.synchronize(device)
    if args.matmul:
        return run_matmul(args, torch)
    torch.manual_seed(args.seed)
    d_model, n_layer = PRESETS[args.preset]
    vocab = 256

    class RMSNorm(nn.Module):
        def __init__(self, d, eps=1e-5):
            super().__init__()
            self.eps = eps
            self.weight = nn.Parameter(torch.ones(d))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight

    def selective_scan_precomputed(u, delta, A, B, C):
        """u, delta (b, l, d); A (d, n); B, C (b, l, n) -> y (b, l, d) without the D skip and gate."""
        b, l, d = u.shape
        deltaA = torch.exp(delta.unsqueeze(-1) * A)               # (b, l, d, n)
        deltaB_u = (delta * u).unsqueeze(-1) * B.unsqueeze(2)     # (b, l, d, n)
        h = u.new_zeros(b, d, A.shape[1])
        ys = []
        for dA, dBu, c in zip(deltaA.unbind(1), deltaB_u.unbind(1), C.unbind(1)):
            h = dA * h + dBu                                      # (b, d, n)
            ys.append(torch.bmm(h, c.unsqueeze(-1)).squeeze(-1))  # (b, d)
        return torch.stack(ys, dim=1)

    def selective_scan_loop(u, delta, A, B, C):
        """The same scan with each step's factors computed in the loop (no (b, l, d, n) tensors up front)."""
        b, l, d = u.shape
        h = u.new_zeros(b, d, A.shape[1])
        ys = []
        for dt, x, bt, c in zip(delta.unbind(1), u.unbind(1), B.unbind(1), C.unbind(1)):
            h = torch.exp(dt.unsqueeze(-1) * A) * h + (dt * x).unsqueeze(-1) * bt.unsqueeze(1)  # (b, d, n)
            ys.append(torch.bmm(h, c.unsqueeze(-1)).squeeze(-1))  # (b, d)
        return torch.stack(ys, dim=1)

    selective_scan = selective_scan_loop if args.scan == "loop" else selective_scan_precomputed

    class Mixer(nn.Module):
        def __init__(self, d_model, n_layer, d_state=16, d_conv=4, expand=2):
            super().__init__()
            di, R = expand * d_model, math.ceil(d_model / 16)
            self.di, self.R, self.n = di, R, d_state
            self.in_proj = nn.Linear(d_model, 2 * di, bias=False)
            self.conv1d = nn.Conv1d(di, di, d_conv, groups=di, padding=d_conv - 1, bias=True)
            self.x_proj = nn.Linear(di, R + 2 * d_state, bias=False)
            self.dt_proj = nn.Linear(R, di, bias=True)
            with torch.no_grad():
                s = R ** -0.5
                nn.init.uniform_(self.dt_proj.weight, -s, s)
                dt = torch.exp(torch.rand(di) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
                self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(di, 1))
            self.D = nn.Parameter(torch.ones(di))
            self.out_proj = nn.Linear(di, d_model, bias=False)
            with torch.no_grad():
                self.out_proj.weight /= math.sqrt(n_layer)

        def forward(self, hidden):  # (b, l, d_model)
            l = hidden.shape[1]
            x, z = self.in_proj(hidden).chunk(2, dim=-1)
            x = F.silu(self.conv1d(x.transpose(1, 2))[..., :l].transpose(1, 2))  # causal depthwise conv
            dt, B, C = self.x_proj(x).split([self.R, self.n, self.n], dim=-1)
            delta = F.softplus(self.dt_proj(dt))
            A = -torch.exp(self.A_log)
            y = selective_scan(x, delta, A, B, C)
            y = (y + x * self.D) * F.silu(z)
            return self.out_proj(y)

        def step(self, hidden, cache):  # hidden (b, d_model); cache = (conv window (b, di, k), ssm state (b, di, n))
            conv_state, h = cache
            x, z = self.in_proj(hidden).chunk(2, dim=-1)
            conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
            conv_state[:, :, -1] = x
            x = F.silu(torch.sum(conv_state * self.conv1d.weight.squeeze(1), dim=-1) + self.conv1d.bias)
            dt, B, C = self.x_proj(x).split([self.R, self.n, self.n], dim=-1)
            dt = F.softplus(self.dt_proj(dt))
            A = -torch.exp(self.A_log)
            dA = torch.exp(dt.unsqueeze(-1) * A)
            h.copy_(dA * h + (dt * x).unsqueeze(-1) * B.unsqueeze(1))
            y = (h @ C.unsqueeze(-1)).squeeze(-1) + self.D * x
            return self.out_proj(y * F.silu(z))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.mixer = Mixer(d_model, n_layer)
            self.norm = RMSNorm(d_model)

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.Embedding(vocab, d_model)
            nn.init.normal_(self.embeddings.weight, std=0.02)
            self.layers = nn.ModuleList([Block() for _ in range(n_layer)])
            self.norm_f = RMSNorm(d_model)

    class MambaLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = Backbone()  # Hugging Face's names (docs/design.md#checkpoints-and-the-run-folder)

        def forward(self, tokens):
            bb = self.backbone
            h, residual = bb.embeddings(tokens), None
            for layer in bb.layers:
                residual = h if residual is None else residual + h
                h = layer.mixer(layer.norm(residual))
            residual = residual + h
            return F.linear(bb.norm_f(residual), bb.embeddings.weight)  # tied head

        def step(self, tokens, caches):  # tokens (b,) -> logits (b, vocab)
            bb = self.backbone
            h, residual = bb.embeddings(tokens), None
            for layer, cache in zip(bb.layers, caches):
                residual = h if residual is None else residual + h
                h = layer.mixer.step(layer.norm(residual), cache)
            residual = residual + h
            return F.linear(bb.norm_f(residual), bb.embeddings.weight)

    # data first, then the baseline RSS: what the process holds before the model exists
    if args.data:
        buf = read_bytes(args.data)
        buf = torch.frombuffer(bytearray(buf[: len(buf) * 9 // 10]), dtype=torch.uint8)
    else:
        g = torch.Generator().manual_seed(1234)
        buf = torch.randint(0, 256, (1 << 20,), dtype=torch.uint8, generator=g)
    base_rss = current_rss_mb()
    base_dev = 0
    if gpu:
        torch.cuda.init()
        sync()
        torch.cuda.reset_peak_memory_stats(device)
        base_dev = torch.cuda.memory_allocated(device)

    model = MambaLM()  # initialised on the CPU (the same draws on any device), then moved
    model.train()

    if args.load:
        try:
            from safetensors.torch import load_file
        except ImportError:
            print("torch_peer check skipped: the safetensors package is not installed")
            return 0
        sd = load_file(os.path.join(args.load, "model.safetensors"))
        model.load_state_dict(sd, strict=True)
        if args.check_logits:
            f = load_file(args.check_logits)
            with torch.no_grad():
                ours = model(f["tokens"].long()).double()
            ref = f["logits"].double()
            d = (ours - ref).abs().max().item()
            rel = d / ref.abs().max().item()
            loss_t = F.cross_entropy(ours[0, :-1], f["tokens"][0, 1:].long()).item()
            loss_m = F.cross_entropy(ref[0, :-1], f["tokens"][0, 1:].long()).item()
            print(f"torch_peer check_logits max_abs_diff={d:.3e} max_rel_diff={rel:.3e} "
                  f"loss_torch={loss_t:.6f} loss_mambagrad={loss_m:.6f}")
            return 0 if rel < 1e-4 else 1

    model.to(device)
    if args.generate:
        return run_generate(args, model, device, sync, torch, F)
    decay = [p for name, p in model.named_parameters()
             if name.endswith(("in_proj.weight", "conv1d.weight", "x_proj.weight", "dt_proj.weight", "out_proj.weight"))]
    ids = {id(p) for p in decay}
    no_decay = [p for p in model.parameters() if id(p) not in ids]  # biases, norms, A_log, D, embedding
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if gpu else {}))
    data_gen = torch.Generator().manual_seed(args.seed + 1)
    offsets = torch.arange(args.seq + 1)

    total = fwd = bwd = upd = 0.0
    loss_first = loss_last = float("nan")
    for step in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        starts = torch.randint(0, buf.numel() - args.seq, (args.batch,), generator=data_gen)
        window = buf[starts.unsqueeze(1) + offsets].long().to(device, non_blocking=True)
        inputs, targets = window[:, :-1], window[:, 1:]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.autocast):
            loss = F.cross_entropy(model(inputs).reshape(-1, vocab), targets.reshape(-1))
        lv = loss.item()
        t1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        sync()
        t2 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sync()
        t3 = time.perf_counter()
        if step == 0:
            loss_first = lv
        loss_last = lv
        if args.verbose:
            print(f"torch_peer_step step={step + 1} loss={lv:.4f} ms={1e3 * (t3 - t0):.1f}", flush=True)
        if step >= args.warmup:
            total += t3 - t0
            fwd += t1 - t0
            bwd += t2 - t1
            upd += t3 - t2

    n = args.steps
    nparams = sum(p.numel() for p in model.parameters())
    dev_fields = ""
    if gpu:
        peak_dev = (torch.cuda.max_memory_allocated(device) - base_dev) / (1024.0 * 1024.0)
        dev_fields = f"device={args.device} gpu={torch.cuda.get_device_name(device).replace(' ', '_')} peak_dev_mb={peak_dev:.1f} "
    print(f"torch_peer preset={args.preset} params={nparams} threads={torch.get_num_threads()} {dev_fields}"
          f"scan={args.scan} autocast={int(args.autocast)} "
          f"tokens_per_s={args.batch * args.seq * n / total:.1f} ms_per_step={1e3 * total / n:.1f} "
          f"fwd_ms={1e3 * fwd / n:.1f} bwd_ms={1e3 * bwd / n:.1f} opt_ms={1e3 * upd / n:.1f} "
          f"peak_rss_mb={peak_rss_mb():.1f} base_rss_mb={base_rss:.1f} "
          f"loss_first={loss_first:.4f} loss_last={loss_last:.4f} torch={torch.__version__} blas={blas}", flush=True)
    return 0


def run_generate(args, model, device, sync, torch, F):
    """Prefill and greedy decode timings (see --generate in the module docstring)."""
    model.eval()
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, 256, (args.batch, args.prompt_bytes), generator=g).to(device)
    mixers = [layer.mixer for layer in model.backbone.layers]

    def fresh_caches():
        k = mixers[0].conv1d.weight.shape[-1]
        return [(torch.zeros(args.batch, m.di, k, device=device), torch.zeros(args.batch, m.di, m.n, device=device))
                for m in mixers]

    with torch.inference_mode():
        model(prompt)  # warm-up
        times = []
        for _ in range(3):
            sync()
            t0 = time.perf_counter()
            model(prompt)
            sync()
            times.append(time.perf_counter() - t0)
        prefill = args.batch * args.prompt_bytes / sorted(times)[1]

        caches = fresh_caches()
        tok = prompt[:, -1]
        for _ in range(10):  # warm-up
            tok = model.step(tok, caches).argmax(-1)
            tok.tolist()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(args.tokens):
                tok = model.step(tok, caches).argmax(-1)
                tok.tolist()  # the sampler reads each pick
            sync()
            times.append(time.perf_counter() - t0)
        t = sorted(times)[1]
    print(f"torch_peer preset={args.preset} batch={args.batch} threads={torch.get_num_threads()} "
          f"prefill_tokens_per_s={prefill:.1f} gen_tokens_per_s={args.batch * args.tokens / t:.1f} "
          f"ms_per_step={1e3 * t / args.tokens:.4f} torch={torch.__version__}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
