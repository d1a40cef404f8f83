"""CPU benchmark of the default 3D denoisers (and the default 2D autoencoder).

    python bench/denoisers.py [--repeats N] [--no-write]

Measures, in one run: the fp32 matmul peak (2048x2048, best of several); for ``DEFAULT_UNET_3D``
and ``DEFAULT_DIT_3D`` (4 latent + 5 conditioning channels on a (16, 32, 32) latent, D along the
slice axis) model calls per second at batch 1 and 4 under ``torch.inference_mode`` (warm-up, then
the median of N), FLOPs per call (``torch.utils.flop_counter.FlopCounterMode``), achieved GFLOP/s
and the fraction of the matmul peak. Prints a markdown table and writes it into
``docs/performance.md`` between this script's markers (other sections are kept).
"""

from __future__ import annotations

import argparse
import datetime
import platform
import re
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, sdpa_flop_count

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ldm_med.nets import (
    DEFAULT_DIT_3D,
    DEFAULT_UNET_3D,
    AutoencoderConfig,
    DenoiserConfig,
    build_autoencoder,
    build_denoiser,
    parameter_count,
)
from ldm_med.nets.cpu import restore_stock_convs

DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- bench/denoisers.py: begin -->", "<!-- bench/denoisers.py: end -->"
LATENT = (16, 32, 32)
AE_SLICES = 4
aten = torch.ops.aten

# FlopCounterMode knows aten.convolution and the CUDA attention kernels; these are the CPU ops
# our networks reach (oneDNN convolutions, CPU flash attention).
FLOP_FORMULAS = {
    aten.mkldnn_convolution: lambda x, w, *a, out_shape=None, **k: conv_flop_count(x, w, out_shape),
    aten._scaled_dot_product_flash_attention_for_cpu: lambda q, k, v, *a, **kw: sdpa_flop_count(
        q, k, v
    ),
}


def matmul_peak(n: int = 2048, repeats: int = 8) -> float:
    """Best fp32 GFLOP/s of an ``n x n`` matmul."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    best = min(_time(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _load() -> str:
    """1-minute load average (other processes skew timings on a small machine)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def count_flops(fn) -> int:
    with FlopCounterMode(display=False, custom_mapping=FLOP_FORMULAS) as fc:
        fn()
    return fc.get_total_flops()


def measure(fn, repeats: int, budget_s: float) -> float:
    """Median seconds of ``fn`` after two warm-up calls, over ``repeats`` calls or ``budget_s``."""
    fn()
    fn()
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < t_end):
        times.append(_time(fn))
    return statistics.median(times)


def bench_denoiser(
    name: str, cfg_dict: dict, batch: int, peak: float, repeats: int, stock=False
) -> dict:
    torch.manual_seed(0)
    cfg = DenoiserConfig.from_dict(cfg_dict)
    model = build_denoiser(cfg).eval()
    if stock:
        restore_stock_convs(model)
    x = torch.randn(batch, cfg.in_channels, *LATENT)
    cond = torch.randn(batch, cfg.cond_channels, *LATENT) if cfg.cond_channels else None
    t = torch.rand(batch) * 1000
    with torch.inference_mode():
        call = lambda: model(x, t, cond)
        flops = count_flops(call)
        sec = measure(call, repeats, budget_s=8.0)
    return _row(name, batch, parameter_count(model), flops, sec, peak)


def bench_autoencoder(peak: float, repeats: int, slices: int = 4, size: int = 256) -> dict:
    """Default 2D autoencoder: encode_volume + decode_volume of ``slices`` slices of ``size``^2."""
    torch.manual_seed(0)
    ae = build_autoencoder(AutoencoderConfig()).eval()
    x = torch.randn(1, 1, slices, size, size)
    with torch.inference_mode():
        call = lambda: ae.decode_volume(ae.encode_volume(x))
        flops = count_flops(call)
        sec = measure(call, repeats, budget_s=10.0)
    name = f"AE 2D enc+dec, {slices} slices {size}x{size}"
    return _row(name, 1, parameter_count(ae), flops, sec, peak)


def _row(name: str, batch: int, params: int, flops: int, sec: float, peak: float) -> dict:
    return {
        "model": name,
        "batch": batch,
        "params (M)": f"{params / 1e6:.2f}",
        "GFLOP/call": f"{flops / 1e9:.2f}",
        "s/call": f"{sec:.3f}",
        "calls/s": f"{1 / sec:.2f}",
        "GFLOP/s": f"{flops / sec / 1e9:.1f}",
        "% of peak": f"{100 * flops / sec / 1e9 / peak:.0f}",
        "_sec": sec,
    }


def markdown_table(rows: list[dict]) -> str:
    cols = [c for c in rows[0] if not c.startswith("_")]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        return m.group(1).strip() if m else platform.processor()
    except OSError:
        return platform.processor() or "unknown"


def write_section(section: str) -> None:
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    old = DOC.read_text() if DOC.exists() else "# Performance\n"
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + block + old[old.index(END) + len(END) :]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(new)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed calls per case (median)")
    ap.add_argument("--no-write", action="store_true", help=f"print only; do not update {DOC.name}")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "python bench/denoisers.py" + (f" --threads {args.threads}" if args.threads else "")
    import monai

    t0 = time.perf_counter()
    load = _load()
    peak = matmul_peak()
    dit_full = {**DEFAULT_DIT_3D, "attention": "full"}
    cases = [
        ("U-Net 3D (DEFAULT_UNET_3D)", DEFAULT_UNET_3D, 1, False),
        ("U-Net 3D (DEFAULT_UNET_3D)", DEFAULT_UNET_3D, 4, False),
        ("U-Net 3D, stock PyTorch conv dispatch", DEFAULT_UNET_3D, 1, True),
        ("DiT 3D (DEFAULT_DIT_3D, slice attention)", DEFAULT_DIT_3D, 1, False),
        ("DiT 3D (DEFAULT_DIT_3D, slice attention)", DEFAULT_DIT_3D, 4, False),
        ("DiT 3D, full attention", dit_full, 1, False),
    ]
    rows = []
    for name, cfg, batch, stock in cases:
        rows.append(bench_denoiser(name, cfg, batch, peak, args.repeats, stock))
        print(f"  {name} batch {batch}: {rows[-1]['s/call']} s/call", file=sys.stderr)
    rows.append(bench_autoencoder(peak, max(3, args.repeats // 2), slices=AE_SLICES))
    elapsed = time.perf_counter() - t0
    load_end = _load()

    unet4 = rows[1]["_sec"]
    # a 64x64 in-plane x 128-slice latent is 32 windows of (16, 32, 32): 8 batch-4 calls per step
    step = 8 * unet4
    ae_volume = rows[-1]["_sec"] * 128 / AE_SLICES
    table = markdown_table(rows)
    section = f"""## Denoisers and autoencoder on CPU (`bench/denoisers.py`)

Command: `{command}` (took {elapsed:.0f} s).
Date: {datetime.date.today().isoformat()}.
torch {torch.__version__}, monai {monai.__version__}, Python {platform.python_version()}.
CPU: {cpu_model()}; torch threads: {torch.get_num_threads()}.
1-min load average at start/end: {load}/{load_end} (other processes skew timings).
fp32 matmul peak (2048x2048, best of 8): **{peak:.0f} GFLOP/s**.

Denoiser inputs: 4 latent + 5 conditioning channels on a (D, H, W) = {LATENT} latent (D along the
slice axis), `torch.inference_mode`, two warm-up calls, median of up to {args.repeats} calls.
FLOPs counted with `FlopCounterMode` (multiply-adds x 2 of convolutions, matmuls, attention).

{table}

What it means for reconstruction: a 256x256x128 volume has a 64x64x128 latent (4x in-plane), i.e.
32 windows of {LATENT}, 8 U-Net calls at batch 4 per sampling step: about {step:.1f} s per step,
{10 * step:.0f}-{20 * step:.0f} s for 10-20 steps. Encoding plus decoding the whole volume with the
default 2D autoencoder costs about {ae_volume:.0f} s more (extrapolated from {AE_SLICES} slices).
"""
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"written to {DOC}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
