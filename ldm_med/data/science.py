"""Procedural scientific volumes: cryo-EM-like molecular density maps and astronomical fields.

* :func:`molecular_density` -- a protein-like chain (helices, strands and loops packed into a blob),
  each atom a Gaussian holding its electron count (C, N, O, S, and the odd metal ion),
  blurred to a chosen resolution and lightly noised, like a cryo-EM map. Spatial unit: angstrom.
* :func:`astro_field` -- a 2D sky image (stars through a Moffat PSF, Sersic galaxies, some with
  spiral arms, fractal nebulae, sky background and noise), or a 3D spectral cube whose third axis is
  wavelength: continua change slowly, emission lines from rotating discs and a nebula with its own
  velocity field move across channels, so the structure varies smoothly but non-linearly along z.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ldm_med.data._fields import smooth_field, spectral_noise
from ldm_med.volume import Volume

# electrons per element: the integral of each atom's Gaussian in the density map
_ELEMENTS = {"C": 6.0, "N": 7.0, "O": 8.0, "S": 16.0, "FE": 26.0, "ZN": 30.0}


# ================================================================================================
# molecular density maps
# ================================================================================================
def molecular_density(
    shape=(64, 64, 64), spacing=(1.0, 1.0, 1.0), seed: int = 0, n_atoms: int | None = None,
    resolution: float | None = None, radius: float | None = None,
) -> Volume:
    """Seeded cryo-EM-like density map of a protein-like molecule.

    Args:
        shape: ``(X, Y, Z)`` voxels.
        spacing: voxel size in angstrom (written to the affine; ``metadata["spatial_unit"]`` says so).
        seed: fully determines the output.
        n_atoms: number of atoms; default fills a sphere of about 60% of the box width at protein
            packing density (about one non-hydrogen atom per 18 cubic angstrom).
        resolution: map resolution in angstrom (Gaussian sigma = 0.225 * resolution); default drawn
            from 2.5-5 per seed.
        radius: radius in angstrom of the sphere the chain is packed into (default 30% of the box
            width); with the default ``n_atoms`` it sets the molecule's size.
    """
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 4 or len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"need a 3D shape (>= 4 each) and 3 positive spacings, got {shape}, {spacing}")
    rng = np.random.default_rng(seed)
    extent = np.array(shape) * np.array(spacing)
    radius = 0.3 * float(extent.min()) if radius is None else float(radius)
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    if n_atoms is None:
        n_atoms = int(4.0 / 3.0 * np.pi * radius ** 3 / 18.0)
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}")
    res = float(resolution) if resolution is not None else float(rng.uniform(2.5, 5.0))
    xyz, z_el = _protein_atoms(rng, n_atoms, radius)
    xyz = xyz @ _random_rotation(rng).T + extent / 2.0
    dens = _splat_gaussians(shape, spacing, xyz, z_el, sigma=0.225 * res)
    peak = float(np.percentile(dens, 99.9)) or 1.0
    dens += rng.standard_normal(shape, dtype=np.float32) * np.float32(0.03 * peak)
    affine = np.diag([*spacing, 1.0])
    meta = {"modality": "EM", "generator": "molecular_density", "seed": int(seed),
            "units": "electrons per cubic angstrom (approx.)", "spatial_unit": "angstrom",
            "resolution_A": round(res, 3), "n_atoms": int(n_atoms),
            "description": "procedural cryo-EM-like density of a protein-like chain"}
    return Volume(dens.astype(np.float32), affine, slice_axis=2, metadata=meta)


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _protein_atoms(
    rng: np.random.Generator, n_atoms: int, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Atom positions (angstrom, centred on 0) and electron counts of a compact chain.

    The C-alpha trace alternates helices (1.5 A rise, 100 degrees per residue), strands (3.3 A per
    residue) and loops (3.8 A random steps), steered back inside ``radius`` when it strays. Each
    residue adds backbone N, C, O and a short side chain.
    """
    n_res = max(1, n_atoms // 8)
    ca = np.zeros((n_res, 3))
    pos = rng.normal(scale=radius * 0.2, size=3)
    direction = rng.normal(size=3)
    i = 0
    while i < n_res:
        # each element heads off in a random direction, pulled back harder the further out it starts
        pull = 3.0 * (np.linalg.norm(pos) / radius) ** 2
        direction = rng.normal(size=3) - pull * pos / (np.linalg.norm(pos) + 1e-9)
        direction /= np.linalg.norm(direction)
        kind = int(rng.choice(3, p=[0.4, 0.25, 0.35]))
        length = min(int(rng.integers(6, 15) if kind == 0 else rng.integers(4, 9)), n_res - i)
        ca[i:i + length] = _secondary_element(rng, kind, length, pos, direction, radius)
        pos = ca[i + length - 1] + direction * 3.8
        i += length
    # backbone and side chains around each C-alpha
    nxt = np.roll(ca, -1, axis=0) - ca
    nxt[-1] = nxt[-2] if n_res > 1 else np.array([3.8, 0, 0])
    nxt /= np.linalg.norm(nxt, axis=1, keepdims=True) + 1e-9
    out_dir = ca - ca.mean(axis=0)
    out_dir /= np.linalg.norm(out_dir, axis=1, keepdims=True) + 1e-9
    out_dir += rng.normal(scale=0.5, size=ca.shape)
    out_dir /= np.linalg.norm(out_dir, axis=1, keepdims=True)
    atoms = [ca, ca - 1.2 * nxt + rng.normal(scale=0.4, size=ca.shape),
             ca + 1.5 * nxt + rng.normal(scale=0.4, size=ca.shape)]
    elements = [np.full(n_res, _ELEMENTS[e]) for e in ("C", "N", "C")]
    atoms.append(atoms[2] + 1.2 * out_dir + rng.normal(scale=0.3, size=ca.shape))
    elements.append(np.full(n_res, _ELEMENTS["O"]))
    side = ca.copy()
    for k in range(4):  # side chains of 0-4 atoms, mostly carbon, ending in N/O/S now and then
        present = rng.random(n_res) < 0.85 - 0.2 * k
        side = side + 1.5 * out_dir + rng.normal(scale=0.5, size=ca.shape)
        el = rng.choice([_ELEMENTS[e] for e in "CNOS"], size=n_res, p=[0.8, 0.08, 0.1, 0.02])
        atoms.append(side[present])
        elements.append(el[present])
    xyz, z_el = np.concatenate(atoms), np.concatenate(elements)
    if rng.random() < 0.3:  # a bound metal ion now and then: a bright isolated peak
        xyz = np.vstack([xyz, xyz[rng.integers(len(xyz))] + rng.normal(scale=2.0, size=3)])
        z_el = np.append(z_el, _ELEMENTS["ZN"] if rng.random() < 0.5 else _ELEMENTS["FE"])
    keep = rng.permutation(len(xyz))[:n_atoms]
    return xyz[keep], z_el[keep]


def _secondary_element(rng, kind: int, length: int, start: np.ndarray, direction: np.ndarray,
                       radius: float) -> np.ndarray:
    """C-alpha positions of one helix (0), strand (1) or loop (2) starting at ``start``.

    Loops are 3.8 A random steps that curl back towards the centre once outside ``radius / 2``.
    """
    t = np.arange(length)
    if kind == 2:
        out = np.empty((length, 3))
        p = np.asarray(start, dtype=np.float64)
        for j in range(length):
            out[j] = p
            step = rng.normal(size=3) + direction - 2.0 * max(np.linalg.norm(p) / radius - 0.5, 0) * p / (
                np.linalg.norm(p) + 1e-9)
            p = p + 3.8 * step / np.linalg.norm(step)
        return out
    u = np.cross(direction, rng.normal(size=3))
    u /= np.linalg.norm(u)
    v = np.cross(direction, u)
    if kind == 1:
        zig = 0.9 * ((t % 2) * 2 - 1)
        return start + np.outer(t * 3.3, direction) + np.outer(zig, u)
    ang = np.deg2rad(100.0) * t
    ring = np.outer(np.cos(ang), u) + np.outer(np.sin(ang), v)
    return start + np.outer(t * 1.5, direction) + 2.3 * ring


def _splat_gaussians(shape, spacing, xyz: np.ndarray, weights: np.ndarray, sigma: float) -> np.ndarray:
    """Sum of normalised isotropic Gaussians (sigma in angstrom), each integrating to its weight.

    Trilinear deposit then one Gaussian filter; the deposit's own blur is subtracted from sigma.
    """
    spacing = np.asarray(spacing)
    idx = xyz / spacing - 0.5  # voxel centres sit at (i + 0.5) * spacing
    base = np.floor(idx).astype(np.int64)
    frac = idx - base
    grid = np.zeros(int(np.prod(shape)), dtype=np.float64)
    for corner in np.ndindex(2, 2, 2):
        c = base + np.array(corner)
        w = np.prod(np.where(np.array(corner), frac, 1 - frac), axis=1) * weights
        ok = np.all((c >= 0) & (c < np.array(shape)), axis=1)
        flat = np.ravel_multi_index(tuple(c[ok].T), shape)
        grid += np.bincount(flat, weights=w[ok], minlength=grid.size)
    grid = grid.reshape(shape).astype(np.float32)
    sig_vox = np.sqrt(np.maximum(sigma ** 2 / spacing ** 2 - 1.0 / 6.0, 0.05))
    out = ndimage.gaussian_filter(grid, sig_vox, mode="constant", truncate=3.5)
    return out / np.float32(np.prod(spacing))  # electrons per cubic angstrom


# ================================================================================================
# astronomical fields
# ================================================================================================
def astro_field(shape=(128, 128, 32), seed: int = 0, spacing=None,
                source_density: float = 1.0) -> Volume | np.ndarray:
    """Seeded astronomical field: a 2D image for a 2-tuple ``shape``, else a 3D spectral cube.

    Args:
        shape: ``(H, W)`` for an image (returns a float32 array) or ``(X, Y, n_channels)`` for a
            cube (returns a :class:`Volume` with the wavelength axis as ``slice_axis`` 2).
        seed: fully determines the output.
        spacing: cube voxel size written to the affine (default 1: pixels and channels).
        source_density: multiplies the expected number of stars and galaxies (1: about 60 stars and
            25 galaxies per 256x256 pixels).
    Values are counts above zero: sky background about 100, noise sigma about 3 at the background.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 2 or min(shape[:2]) < 8:
        raise ValueError(f"shape must be (H, W) or (X, Y, C) with H, W >= 8, got {shape}")
    rng = np.random.default_rng(seed)
    nx, ny = shape[:2]
    nch = shape[2] if len(shape) == 3 else 1
    lam = np.linspace(0.0, 1.0, nch, dtype=np.float32) if nch > 1 else np.array([0.5], np.float32)
    cube = np.zeros((nx, ny, nch), dtype=np.float32)
    _add_nebula(cube, rng, lam)
    sources = np.zeros_like(cube)
    _add_galaxies(sources, rng, lam, source_density)
    _add_stars(sources, rng, lam, source_density)
    fwhm = rng.uniform(1.8, 3.2)
    beta = rng.uniform(2.5, 4.5)
    cube += _convolve_psf(sources, fwhm * (1.0 + 0.15 * (0.5 - lam)), beta)
    sky = 100.0 * (1.0 + 0.1 * np.sin(3.0 * lam + rng.uniform(0, 6)))
    cube += sky
    sigma = np.sqrt(9.0 + 0.3 * np.clip(cube - sky, 0, None))  # read noise and photon noise
    cube += rng.standard_normal(cube.shape, dtype=np.float32) * sigma
    if len(shape) == 2:
        return cube[..., 0]
    spacing = (1.0, 1.0, 1.0) if spacing is None else tuple(float(s) for s in spacing)
    meta = {"modality": "ASTRO", "generator": "astro_field", "seed": int(seed), "units": "counts",
            "axes": "x, y, wavelength channel", "psf_fwhm_px": round(float(fwhm), 3),
            "description": "procedural spectral cube: stars, galaxies with rotating gas, nebula"}
    return Volume(cube, np.diag([*spacing, 1.0]), slice_axis=2, metadata=meta)


def _gauss(lam: np.ndarray, centre, width) -> np.ndarray:
    return np.exp(-0.5 * ((lam - centre) / width) ** 2)


def _add_nebula(cube: np.ndarray, rng: np.random.Generator, lam: np.ndarray) -> None:
    """Fractal emission nebula: lognormal brightness, continuum plus a line that its velocity field
    moves across channels."""
    nx, ny, nch = cube.shape
    if rng.random() < 0.25:
        return
    bright = np.exp(1.2 * spectral_noise((nx, ny), rng, power=3.2, k_min=1.0))
    envelope = np.clip(smooth_field((nx, ny), rng, (3, 3)) + 0.3, 0, None)
    nebula = rng.uniform(5, 30) * bright * envelope
    if nch == 1:
        cube[..., 0] += nebula
        return
    vel = 0.06 * smooth_field((nx, ny), rng, (4, 4))
    centre = rng.uniform(0.3, 0.7) + vel[..., None]
    cube += nebula[..., None] * (0.15 + 1.5 * _gauss(lam[None, None, :], centre, rng.uniform(0.04, 0.08)))


def _add_galaxies(img: np.ndarray, rng: np.random.Generator, lam: np.ndarray, density: float = 1.0) -> None:
    """Sersic galaxies (random index, size, ellipticity, angle), some with spiral arms; in a cube each
    has a sloped continuum and an emission line shifted by disc rotation along its major axis."""
    nx, ny, nch = img.shape
    n_gal = rng.poisson(25 * density * nx * ny / 256 ** 2) + 1
    for _ in range(n_gal):
        n = rng.uniform(0.5, 4.0)
        r_e = float(np.exp(rng.uniform(np.log(1.5), np.log(max(2.0, 0.06 * min(nx, ny))))))
        q, pa = rng.uniform(0.3, 1.0), rng.uniform(0, np.pi)
        flux = 1500.0 * rng.pareto(1.3) + 800.0
        cx, cy = rng.uniform(0, nx), rng.uniform(0, ny)
        half = int(min(6 * r_e + 3, 0.4 * max(nx, ny)))
        x0, x1 = max(int(cx) - half, 0), min(int(cx) + half + 1, nx)
        y0, y1 = max(int(cy) - half, 0), min(int(cy) + half + 1, ny)
        if x1 <= x0 or y1 <= y0:
            continue
        dx = np.arange(x0, x1)[:, None] + 0.5 - cx
        dy = np.arange(y0, y1)[None, :] + 0.5 - cy
        u = dx * np.cos(pa) + dy * np.sin(pa)  # along the major axis
        v = -dx * np.sin(pa) + dy * np.cos(pa)
        r = np.sqrt(u ** 2 + (v / q) ** 2) + 1e-3
        b_n = 2.0 * n - 1.0 / 3.0 + 0.009876 / n
        prof = np.exp(-b_n * ((r / r_e) ** (1.0 / n) - 1.0))
        if n < 1.5 and r_e > 4 and rng.random() < 0.5:  # spiral arms on large discs
            arms = np.arctan2(v / q, u) - np.log(r / r_e) / np.tan(rng.uniform(0.2, 0.5))
            prof *= 1.0 + 0.8 * np.cos(2.0 * arms)
        prof *= flux / max(float(prof.sum()), 1e-6)
        spec = (1.0 + rng.uniform(-0.6, 0.6) * (lam - 0.5)).astype(np.float32)
        block = prof[..., None] * spec[None, None, :]
        if nch > 1 and rng.random() < 0.7:  # rotating gas disc: its line moves across channels
            gas = np.exp(-r / (1.5 * r_e)) * flux * rng.uniform(0.02, 0.08)
            shift = rng.uniform(0.02, 0.08) * np.tanh(u / r_e)
            line = _gauss(lam[None, None, :], rng.uniform(0.2, 0.8) + shift[..., None], 0.035)
            block += gas[..., None] * line
        img[x0:x1, y0:y1] += block.astype(np.float32)


def _add_stars(img: np.ndarray, rng: np.random.Generator, lam: np.ndarray, density: float = 1.0) -> None:
    """Point sources with power-law fluxes and sloped continua, deposited with bilinear weights."""
    nx, ny, _ = img.shape
    n_star = rng.poisson(60 * density * nx * ny / 256 ** 2) + 1
    pos = rng.uniform(0, 1, (n_star, 2)) * np.array([nx - 1, ny - 1])
    flux = 400.0 * (rng.pareto(1.5, n_star) + 1.0)
    slope = rng.uniform(-1.0, 1.0, n_star)
    spec = flux[:, None] * np.clip(1.0 + slope[:, None] * (lam[None, :] - 0.5), 0.1, None)
    base = np.floor(pos).astype(int)
    frac = pos - base
    for ox in (0, 1):
        for oy in (0, 1):
            w = (frac[:, 0] if ox else 1 - frac[:, 0]) * (frac[:, 1] if oy else 1 - frac[:, 1])
            ix, iy = np.minimum(base[:, 0] + ox, nx - 1), np.minimum(base[:, 1] + oy, ny - 1)
            np.add.at(img, (ix, iy), (w[:, None] * spec).astype(np.float32))


def _convolve_psf(img: np.ndarray, fwhm: Sequence[float], beta: float) -> np.ndarray:
    """Convolve each channel with a Moffat PSF of that channel's FWHM (unit sum), via FFT."""
    nx, ny, nch = img.shape
    fx = sfft.fftfreq(nx)[:, None] * nx
    fy = sfft.fftfreq(ny)[None, :] * ny
    r2 = (fx ** 2 + fy ** 2).astype(np.float32)  # squared pixel distance from the origin, wrapped
    spec = sfft.rfft2(img, axes=(0, 1))
    out = np.empty_like(img)
    for k, fw in enumerate(np.broadcast_to(np.asarray(fwhm, dtype=np.float64), (nch,))):
        alpha = fw / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
        psf = (1.0 + r2 / alpha ** 2) ** (-beta)
        psf /= psf.sum()
        out[..., k] = sfft.irfft2(spec[..., k] * sfft.rfft2(psf), s=(nx, ny))
    return out
