"""``DiTDenoiser``: a DiT (Peebles & Xie 2023) for 2D and 3D latents, one code path for both.

Patch embedding by a ``Conv{2,3}d`` with kernel = stride = patch (per-axis patch sizes allowed, e.g.
``(1, 2, 2)`` keeps every latent slice its own token row), positional embedding computed for the
actual token grid (so any grid size works), timestep embedding (sinusoidal + MLP), optional class
labels with a "null" label for classifier-free guidance, adaLN-Zero transformer blocks using
``torch.nn.functional.scaled_dot_product_attention``, a zero-initialised final layer, unpatchify.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ldm_med.errors import InputError
from ldm_med.nets.config import DenoiserConfig
from ldm_med.nets.cpu import use_onednn_convs
from ldm_med.nets.unet import DenoiserBase

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x (B, N, C)``, ``shift, scale (B, C)``."""
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of float timesteps ``t (B,)`` -> ``(B, dim)`` (``[cos, sin]``)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(emb, (0, dim - 2 * half))


def sincos_pos_embed(grid: tuple[int, ...], dim: int) -> Tensor:
    """Fixed N-d sin-cos positional embedding ``(prod(grid), dim)``, row-major over ``grid``.

    Each axis gets an equal even share of ``dim`` (a 1D sin-cos of its integer coordinate); any
    remainder is zero.
    """
    per_axis = (dim // (2 * len(grid))) * 2
    omega = 1.0 / 10000 ** (torch.arange(per_axis // 2, dtype=torch.float64) / (per_axis / 2))
    coords = torch.meshgrid(*(torch.arange(g, dtype=torch.float64) for g in grid), indexing="ij")
    parts = []
    for c in coords:
        out = c.reshape(-1, 1) * omega[None]  # (N, per_axis/2)
        parts += [torch.sin(out), torch.cos(out)]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, dim - emb.shape[1])).float()


class DiTBlock(nn.Module):
    """Transformer block with adaLN-Zero conditioning on ``c (B, C)``.

    ``mode``: "full" attends over all tokens; "inplane" over the tokens of one slice (same index
    on the first grid axis); "across" over the tokens at one in-plane position (along the first
    axis).
    """

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float, mode: str = "full") -> None:
        super().__init__()
        self.num_heads, self.mode = num_heads, mode
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        mlp = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(hidden, mlp), nn.GELU(approximate="tanh"), nn.Linear(mlp, hidden)
        )
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def attention(self, x: Tensor, g0: int) -> Tensor:
        """Self-attention on ``x (B, N, C)``, tokens grouped by ``mode``; ``g0``: grid size on the
        first axis."""
        b, n, c = x.shape  # (B, N, C), N = g0 * m
        if self.mode == "inplane":
            x = x.reshape(b * g0, n // g0, c)  # (B*g0, m, C)
        elif self.mode == "across":
            x = x.reshape(b, g0, n // g0, c).transpose(1, 2).reshape(-1, g0, c)  # (B*m, g0, C)
        s, L = x.shape[:2]  # S sequences of L tokens
        qkv = self.qkv(x).reshape(
            s, L, 3, self.num_heads, c // self.num_heads
        )  # (S, L, 3, heads, C/heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (S, heads, L, C/heads)
        o = F.scaled_dot_product_attention(q, k, v)  # (S, heads, L, C/heads)
        o = self.proj(o.transpose(1, 2).reshape(s, L, c))  # (S, L, C)
        if self.mode == "across":
            return o.reshape(b, n // g0, g0, c).transpose(1, 2).reshape(b, n, c)  # (B, N, C)
        return o.reshape(b, n, c)  # (B, N, C)

    def forward(self, x: Tensor, c: Tensor, g0: int) -> Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaLN(c).chunk(6, dim=1)  # each (B, C)
        a = self.attention(modulate(self.norm1(x), shift1, scale1), g0)  # (B, N, C)
        x = x + gate1.unsqueeze(1) * a  # (B, N, C)
        m = self.mlp(modulate(self.norm2(x), shift2, scale2))  # (B, N, C)
        return x + gate2.unsqueeze(1) * m  # (B, N, C)


class FinalLayer(nn.Module):
    """adaLN + linear to ``prod(patch) * out_channels`` per token; zero-initialised."""

    def __init__(self, hidden: int, out_per_token: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.adaLN = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden))
        self.linear = nn.Linear(hidden, out_per_token)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = self.adaLN(c).chunk(2, dim=1)  # each (B, C)
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, N, prod(p) * out)


class DiTDenoiser(DenoiserBase):
    """DiT over ``(B, C, *spatial)`` latents, ``spatial_dims`` 2 or 3.

    ``attention="full"``: every block attends over all tokens (cost ~N^2). ``"slice"``: blocks
    alternate between attention within each slice (tokens sharing the first grid index) and across
    slices (tokens sharing the in-plane position), as video DiTs factorise space and time;
    with ``(16, 16, 16)`` tokens that is ~30x less attention work than "full".

    Every spatial size must be a multiple of the patch size on that axis (``required_multiple``).
    With ``pos_embed="learned"``, learned per-axis tables (zero-initialised, up to ``max_grid``
    tokens per axis) are added to the fixed sin-cos embedding.
    """

    def __init__(self, cfg: DenoiserConfig) -> None:
        super().__init__()
        self.cfg = cfg
        hidden, self.patch = cfg.hidden_size, tuple(cfg.patch_size)  # type: ignore[arg-type]
        in_ch = cfg.in_channels + cfg.cond_channels
        self.patch_embed = _CONV[cfg.spatial_dims](
            in_ch, hidden, kernel_size=self.patch, stride=self.patch
        )
        self.t_embed = nn.Sequential(nn.Linear(256, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        # num_classes real labels + 1 null label (index num_classes) for classifier-free guidance
        self.y_embed = nn.Embedding(cfg.num_classes + 1, hidden) if cfg.num_classes else None
        self.pos_tables = (
            nn.ParameterList(nn.Parameter(torch.zeros(cfg.max_grid, hidden)) for _ in self.patch)
            if cfg.pos_embed == "learned"
            else None
        )
        modes = ("inplane", "across") if cfg.attention == "slice" else ("full",)
        self.blocks = nn.ModuleList(
            DiTBlock(hidden, cfg.num_heads, cfg.mlp_ratio, modes[i % len(modes)])
            for i in range(cfg.depth)
        )
        self.final = FinalLayer(hidden, math.prod(self.patch) * cfg.out_channels)  # type: ignore[operator]
        self._pos_cache: dict[tuple, Tensor] = {}
        self.reset_parameters()
        use_onednn_convs(self)

    def reset_parameters(self) -> None:
        """DiT's initialisation: xavier linears, adaLN modulations and the output layer zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for lin in (self.t_embed[0], self.t_embed[2]):
            nn.init.normal_(lin.weight, std=0.02)
        if self.y_embed is not None:
            nn.init.normal_(self.y_embed.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.adaLN[-1].weight)
            nn.init.zeros_(block.adaLN[-1].bias)
        for lin in (self.final.adaLN[-1], self.final.linear):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def input_conv(self) -> nn.Module:
        return self.patch_embed

    def pos_embed(self, grid: tuple[int, ...], like: Tensor) -> Tensor:
        """Positional embedding ``(N, hidden)`` for a token grid; the sin-cos part is cached."""
        key = (grid, like.device, like.dtype)
        pos = self._pos_cache.get(key)
        if pos is None:
            # a plain tensor (not an inference tensor), so it is usable when training too
            with torch.inference_mode(False), torch.no_grad():
                pos = sincos_pos_embed(grid, self.cfg.hidden_size).to(like.device, like.dtype)
            if len(self._pos_cache) >= 8:
                self._pos_cache.clear()
            self._pos_cache[key] = pos
        if self.pos_tables is None:
            return pos
        if max(grid) > self.cfg.max_grid:
            raise InputError(
                f"token grid {grid} exceeds max_grid={self.cfg.max_grid} of the learned embedding"
            )
        learned = sum(
            table[:g].reshape(*(g if i == a else 1 for i in range(len(grid))), -1)
            for a, (table, g) in enumerate(zip(self.pos_tables, grid))
        )  # (*grid, hidden)
        return pos + learned.reshape(-1, pos.shape[1])

    def unpatchify(self, h: Tensor, grid: tuple[int, ...]) -> Tensor:
        """``(B, N, prod(p) * out)`` -> ``(B, out, *(grid * p))``."""
        n = len(grid)
        h = h.reshape(h.shape[0], *grid, *self.patch, -1)  # (B, *G, *p, out)
        perm = [0, 2 * n + 1] + [ax for i in range(n) for ax in (1 + i, 1 + n + i)]
        h = h.permute(perm)  # (B, out, G1, p1, G2, p2, ...)
        return h.reshape(h.shape[0], h.shape[1], *(g * p for g, p in zip(grid, self.patch)))

    def forward(
        self, x: Tensor, t: Tensor | float, cond: Tensor | None = None, labels: Tensor | None = None
    ) -> Tensor:
        """``x (B, in, *S)``, ``t (B,)`` ~[0, 1000], ``cond (B, cond, *S)``, ``labels (B,)``
        -> ``(B, out, *S)``."""
        x, t, labels = self.prepare(x, t, cond, labels)  # x: (B, in + cond, *S)
        grid = tuple(s // p for s, p in zip(x.shape[2:], self.patch))  # G = S / p per axis
        h = self.patch_embed(x)  # (B, C, *G), C = hidden_size
        h = h.flatten(2).transpose(1, 2)  # (B, N, C), N = prod(G)
        h = h + self.pos_embed(grid, h)  # (B, N, C)
        c = self.t_embed(timestep_embedding(t, 256).to(h.dtype))  # (B, C)
        if self.y_embed is not None:
            c = c + self.y_embed(labels)  # (B, C)
        for block in self.blocks:
            h = block(h, c, grid[0])  # (B, N, C)
        h = self.final(h, c)  # (B, N, prod(p) * out)
        return self.unpatchify(h, grid)  # (B, out, *S)
