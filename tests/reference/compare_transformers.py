#!/usr/bin/env python3
"""Cross-checks a mambagrad run folder against Hugging Face transformers' MambaForCausalLM.

    ./build/mambagrad logits --run RUN --input FILE --out /tmp/logits.safetensors [--bytes N]
    /usr/bin/python3 tests/reference/compare_transformers.py RUN /tmp/logits.safetensors

loads RUN (model.safetensors + config.json, as written by `mambagrad train`) with
MambaForCausalLM.from_pretrained(RUN) (the slow, pure-PyTorch path on the CPU), runs the tokens stored
in the logits file, and prints the largest absolute and relative differences from mambagrad's
logits: once with the model in float32 (as mambagrad computes) and once in float64 (a reference that
is exact to float32's precision; residual_in_fp32 is switched off there, or it would round the
residual stream to float32). Exits 1 when a relative difference (max |ours - hf| / max |hf|) is above
--tol (1e-4), or when the folder's weights do not load cleanly (missing or unexpected tensors).

Not run by CI. Needs: pip install transformers safetensors (docs/hf-check.md has the versions used).
"""
import argparse
import sys

import torch
from safetensors.torch import load_file


def diff(ours, ref):
    ours, ref = ours.double(), ref.double()
    d = (ours - ref).abs()
    max_abs = d.max().item()
    max_ref = ref.abs().max().item()
    # elementwise, with a floor so near-zero logits do not dominate
    elem = (d / (ref.abs() + 1e-3 * max_ref)).max().item()
    return max_abs, max_abs / max_ref, elem, max_ref


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="mambagrad run folder (model.safetensors + config.json)")
    ap.add_argument("logits", help="output of `mambagrad logits` (tokens and logits)")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest relative difference allowed")
    args = ap.parse_args()

    import transformers
    from transformers import MambaForCausalLM
    from transformers.models.mamba import modeling_mamba

    print(f"transformers {transformers.__version__}, torch {torch.__version__}, "
          f"fast path (mamba-ssm kernels) available: {modeling_mamba.is_fast_path_available}")
    f = load_file(args.logits)
    tokens, ours = f["tokens"].long(), f["logits"].float()
    print(f"tokens {tuple(tokens.shape)}, mambagrad logits {tuple(ours.shape)}")

    ok = True
    for dtype, extra in [(torch.float32, {}), (torch.float64, {"residual_in_fp32": False})]:
        model, info = MambaForCausalLM.from_pretrained(args.run_dir, torch_dtype=dtype, output_loading_info=True, **extra)
        missing = [k for k in info["missing_keys"] if k != "lm_head.weight"]  # tied to the embedding
        bad = missing + list(info["unexpected_keys"]) + list(info["mismatched_keys"]) + list(info["error_msgs"])
        if bad:
            print(f"loading {args.run_dir} did not match the checkpoint: {info}")
            ok = False
        assert model.lm_head.weight.data_ptr() == model.backbone.embeddings.weight.data_ptr(), "head not tied"
        model.eval()
        with torch.no_grad():
            hf = model(tokens, use_cache=False).logits  # no MambaCache: the plain full forward
        if hf.shape != ours.shape:
            print(f"shape mismatch: transformers {tuple(hf.shape)} vs mambagrad {tuple(ours.shape)}")
            return 1
        max_abs, rel, elem, max_ref = diff(ours, hf)
        name = str(dtype).replace("torch.", "")
        print(f"transformers in {name}: max |logit| {max_ref:.4f}, max abs diff {max_abs:.3e}, "
              f"max rel diff {rel:.3e} (max |d| / max |logit|), worst elementwise rel {elem:.3e}")
        if rel > args.tol:
            print(f"  FAIL: relative difference {rel:.3e} above {args.tol:g}")
            ok = False
        # Same argmax at (nearly) every position: a sanity check that is easy to read.
        agree = (hf.argmax(-1) == ours.argmax(-1)).float().mean().item()
        print(f"  argmax agrees at {100 * agree:.1f}% of positions")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
