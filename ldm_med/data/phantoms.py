"""Procedural CT body and MR head phantoms: seeded, anatomically plausible training data and fixtures.

Both are laid out in normalised world coordinates (see :mod:`ldm_med.data._fields`): the anatomy fills
the in-plane field of view, and ``shape[2] * spacing[2]`` decides how much of it the slices cover.
Structures change smoothly but non-linearly from slice to slice (domes, ellipsoids that start and end,
oblique ribs and vessels, vertebrae and discs, cortical folds), so filling missing slices is a real
problem, not a linear interpolation. A mild random deformation and per-seed anatomy variation make
every seed a different "patient". The output is rounded to integers, as scanners store it.

* :func:`ct_body` -- thorax/abdomen in Hounsfield units: air -1000, fat about -100, soft tissue 30-60,
  lungs about -850 with vessel trees and airways, bone 200-1200 (cortex brighter than marrow); half the
  seeds are contrast-enhanced (blood 150-250 HU). Noise sigma about 10 HU, slight partial-volume blur.
* :func:`mr_head` -- T1-weighted head, arbitrary units >= 0: scalp fat, skull with marrow, CSF, folded
  grey matter over white matter, ventricles, deep grey nuclei, cerebellum, orbits; bias field and
  Rician noise.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from scipy import ndimage

from ldm_med.data._fields import (
    Grid,
    ellipsoid_mask,
    paint_segments,
    plane_wave_field,
    smooth_field,
)
from ldm_med.volume import Volume


def _check_grid(shape, spacing) -> Grid:
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape must be 3 sizes >= 2, got {shape}")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing}")
    return Grid(shape, spacing)  # type: ignore[arg-type]


def _deformed_coords(grid: Grid, rng: np.random.Generator, amp: float):
    """Normalised coordinates displaced by a smooth random field (about ``amp`` std per axis)."""
    x, y, z = grid.axes()
    shape = grid.shape
    X = x + np.float32(amp) * smooth_field(shape, rng, (5, 5, 4))
    Y = y + np.float32(amp) * smooth_field(shape, rng, (5, 5, 4))
    Z = z + np.float32(amp * 0.6) * smooth_field(shape, rng, (4, 4, 5))
    return X, Y, Z, 4.0 * amp


def _shrunk(X, Y, Z, pad, fill: float):
    """In-plane coordinates stretched by ``1 / fill``: the anatomy spans ``fill`` of the field of view."""
    if not 0.1 <= fill <= 1.0:
        raise ValueError(f"fill must be in [0.1, 1], got {fill}")
    if fill == 1.0:
        return X, Y, Z, pad
    return X / np.float32(fill), Y / np.float32(fill), Z, pad


def _voxel_size(grid: Grid) -> float:
    """Geometric-mean voxel size in normalised units (the width of a partial-volume edge)."""
    return float(np.prod(grid.spacing) ** (1.0 / 3.0) / grid.scale)


def _finish(img: np.ndarray, rng: np.random.Generator, blur: tuple[float, ...], noise: float,
            grid: Grid, rician: bool = False) -> np.ndarray:
    """Partial-volume blur (sigmas in mm), then noise, then integer rounding."""
    sig = [b / s for b, s in zip(blur, grid.spacing)]
    img = ndimage.gaussian_filter(img, sig, mode="nearest")
    if rician:
        n1 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
        n2 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
        img = np.sqrt((img + n1) ** 2 + n2 ** 2)
    else:
        img = img + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
    return np.rint(img).astype(np.float32)


# ================================================================================================
# CT body
# ================================================================================================
def ct_body(shape=(128, 128, 64), spacing=(1.0, 1.0, 2.5), seed: int = 0, fill: float = 1.0) -> Volume:
    """Seeded thorax/abdomen CT phantom in Hounsfield units (see module docstring).

    Args:
        shape: ``(X, Y, Z)`` voxels; slices along axis 2.
        spacing: voxel size in mm; the body fills the in-plane field of view.
        seed: fully determines the output.
        fill: in-plane fraction of the field of view the body spans (1: all of it; 0.5: a body half
            as wide, in air).
    """
    grid = _check_grid(shape, spacing)
    rng = np.random.default_rng(seed)
    X, Y, Z, pad = _shrunk(*_deformed_coords(grid, rng, amp=0.02), fill)
    p = _ct_params(rng)
    img = np.full(grid.shape, -1000.0, dtype=np.float32)
    ctx = SimpleNamespace(grid=grid, X=X, Y=Y, Z=Z, pad=pad, p=p, rng=rng, img=img,
                          tex=smooth_field(grid.shape, rng, (22, 22, 14)), h=_voxel_size(grid) / fill)
    _ct_torso(ctx)
    _ct_thorax(ctx)
    _ct_abdomen(ctx)
    _ct_spine(ctx)
    _ct_ribs(ctx)
    img = np.clip(_finish(img, rng, blur=(0.6, 0.6, 0.8), noise=10.0, grid=grid), -1024, 3071)
    meta = {"modality": "CT", "generator": "ct_body", "seed": int(seed), "units": "HU",
            "contrast_enhanced": bool(p.contrast), "description": "procedural thorax/abdomen phantom"}
    return Volume(img, grid.affine, slice_axis=2, metadata=meta)


def _ct_params(rng: np.random.Generator) -> SimpleNamespace:
    """Per-patient anatomy: sizes, positions, contrast phase (all drawn up front, in a fixed order)."""
    u = rng.uniform
    contrast = bool(rng.random() < 0.5)
    return SimpleNamespace(
        a=u(0.82, 0.93), b=u(0.58, 0.68), shape_phase=u(0, 2 * np.pi, 3),
        fat=u(0.035, 0.11), fat_tilt=u(0, 2 * np.pi), muscle=u(0.035, 0.06),
        zd=u(-0.4, 0.0), zd_lr=u(0.03, 0.12),
        contrast=contrast, blood=u(150, 250) if contrast else u(35, 50),
        liver=u(52, 66), spleen=u(42, 52), kidney=u(28, 38), enh=u(0.7, 1.0) if contrast else 0.0,
        yv=u(-0.24, -0.18), period=u(0.2, 0.26), vphase=u(0, 1), cancellous=u(160, 280),
        rib_gap=u(0.19, 0.23), rib_phase=u(0, 0.2), rib_drop=u(0.25, 0.4),
        heart=u(0.85, 1.15), kidney_dz=u(-0.85, -0.7), n_loops=int(rng.integers(4, 7)),
    )


def _ct_torso(c) -> None:
    """Air, subcutaneous fat, body-wall muscle, visceral fat, and the derived cavity masks."""
    p, X, Y, Z = c.p, c.X, c.Y, c.Z
    z1 = c.grid.axes()[2]  # the outline changes slowly along the body: undeformed z is enough
    a = p.a * (1 + 0.04 * np.sin(1.3 * z1 + p.shape_phase[0]))
    b = p.b * (1 + 0.05 * np.sin(1.1 * z1 + p.shape_phase[1]))
    r = np.sqrt((X / a) ** 2 + (Y / np.where(Y < 0, b * 0.9, b)) ** 2)
    theta = np.arctan2(Y, X)
    fat = (p.fat * (1 + 0.4 * np.cos(theta - p.fat_tilt)) + 0.01 * np.sin(2 * theta)) / 0.75
    muscle = (p.muscle * (1 + 0.8 * np.clip(-np.sin(theta), 0, None))) / 0.75
    cavity = r < 1 - fat - muscle
    tex = c.tex
    c.img[...] = np.where(r < 1, np.where(r < 1 - fat, np.where(cavity, -90 + 6 * tex, 42 + 4 * tex),
                                          -105 + 8 * tex), -1000.0)
    # diaphragm: the upper envelope of two domes; lungs reach lower at the back (posterior recess)
    recess = 0.35 * np.clip(-Y - 0.05, 0, None)
    dome_r = p.zd + p.zd_lr - 0.9 * ((X - 0.33) ** 2 + 0.6 * Y ** 2) - recess
    dome_l = p.zd - 0.9 * ((X + 0.33) ** 2 + 0.6 * Y ** 2) - recess
    dome = np.maximum(dome_r, dome_l)
    c.thorax = cavity & (Z > dome)
    c.abdomen = cavity & ~c.thorax
    c.r, c.theta, c.fat_r, c.muscle_r = r, theta, fat, muscle
    c.ant_wall_y = p.b * (1 - (p.fat + p.muscle) / 0.75)


def _ct_thorax(c) -> None:
    """Lungs with vessel trees and airways, heart, great vessels, sternum."""
    p, X, Y, Z, img, rng, g = c.p, c.X, c.Y, c.Z, c.img, c.rng, c.grid
    xyz = (X, Y, Z)
    zh = p.zd + 0.3
    heart = ((-0.1, 0.16, zh), (0.36 * p.heart, 0.28 * p.heart, 0.3))
    spine_zone = ((X / 0.2) ** 2 + ((Y - p.yv + 0.06) / 0.2) ** 2) < 1
    medi = (np.abs(X + 0.02) < 0.07 + 0.06 * np.clip(Y + 0.1, 0, None)) | spine_zone
    box, around_heart = ellipsoid_mask(g, xyz, *heart, c.pad, angle=0.5, level=1.25)
    medi[box] |= around_heart
    lungs = c.thorax & ~medi
    dens = -865 + 22 * c.tex + 70 * np.clip(-Y + 0.1, 0, None)
    img[lungs] = dens[lungs]
    box, m = ellipsoid_mask(g, xyz, *heart, c.pad, angle=0.5)
    img[box][m & c.thorax[box]] = 45.0
    box, m = ellipsoid_mask(g, xyz, *heart, c.pad, angle=0.5, level=0.5)
    img[box][m & c.thorax[box]] = p.blood
    # pulmonary vessel trees from both hila; drawn only inside the lungs
    segs = []
    lobes = {  # root height above the heart centre -> main branch directions (lateral, AP, up)
        0.15: ([0.6, 0.3, 0.3], [1, 0.1, 0.1], [0.6, -0.5, -0.5], [0.6, 0.5, -0.4], [0.5, -0.7, 0.1]),
        0.55: ([0.3, 0.1, 1], [0.6, 0.4, 0.6], [0.6, -0.5, 0.5], [0.7, 0.0, 0.0], [0.4, -0.6, 0.0]),
    }
    for side in (-1.0, 1.0):
        for dz, dirs in lobes.items():
            root = np.array([0.15 * side, 0.02, zh + dz])
            for d in dirs:
                vec = np.array([d[0] * side, d[1], d[2]])
                segs += _vessel_tree(rng, root, vec / np.linalg.norm(vec), 0.26, 0.028, depth=4)
    paint_segments(img, g, xyz, segs, p.blood if p.contrast else 40.0, c.pad, where=lungs, soft=c.h)
    # airways: trachea splitting into main bronchi at the carina, walls then lumen
    zc = zh + 0.42
    airways = [(np.array([0.0, 0.02, zc + 2.0]), np.array([0.0, 0.02, zc]), 0.055)]
    airways += [(np.array([0.0, 0.02, zc]), np.array([0.16 * s, 0.0, zc - 0.16]), 0.04) for s in (-1, 1)]
    paint_segments(img, g, xyz, airways, 40.0, c.pad, where=c.thorax)
    paint_segments(img, g, xyz, airways, -1000.0, c.pad, where=c.thorax, shrink=0.012)
    # ascending aorta above the heart, sternum in the anterior chest wall
    asc = [(np.array([0.02, 0.14, zh + 0.2]), np.array([0.02, 0.14, zc + 2.0]), 0.065)]
    paint_segments(img, g, xyz, asc, p.blood, c.pad, where=c.thorax)
    ys = c.ant_wall_y + 0.03
    ell = (X / 0.06) ** 2 + ((Y - ys) / 0.028) ** 2
    sternum = (ell < 1) & (Z > p.zd + 0.05)
    img[sternum] = np.where(((X / 0.045) ** 2 + ((Y - ys) / 0.016) ** 2)[sternum] < 1, 230.0, 650.0)


def _vessel_tree(rng, root, direction, length, radius, depth) -> list[tuple]:
    """Random binary tree of capsules ``(p0, p1, radius)``: branches bend and thin with depth."""
    end = root + direction * length
    segs = [(root, end, radius)]
    if depth > 1:
        for _ in range(2):
            d = direction + rng.normal(0, 0.55, 3)
            d /= np.linalg.norm(d)
            segs += _vessel_tree(rng, end, d, length * rng.uniform(0.65, 0.85), radius * 0.75, depth - 1)
    return segs


def _ct_abdomen(c) -> None:
    """Bowel loops, liver with vessels, gallbladder, stomach, spleen, pancreas, kidneys, psoas,
    aorta and IVC."""
    p, X, Y, Z, img, rng, ab, g = c.p, c.X, c.Y, c.Z, c.img, c.rng, c.abdomen, c.grid
    xyz = (X, Y, Z)
    zr, zl = p.zd + p.zd_lr, p.zd
    # bowel: random-walk tubes in the lower abdomen, wall then content (fluid, gas or stool)
    for _ in range(p.n_loops):  # anatomy of the patient, not of the field of view: some lie outside
        start = [rng.uniform(-0.45, 0.45), rng.uniform(-0.05, 0.35), rng.uniform(zl - 1.4, zl - 0.5)]
        pts = [np.array(start)]
        for _ in range(8):
            step = rng.normal(0, 1, 3) * np.array([0.1, 0.08, 0.08])
            pts.append(np.clip(pts[-1] + step, [-0.55, -0.15, -3.0], [0.55, 0.45, zl - 0.45]))
        rad = rng.uniform(0.045, 0.08)
        segs = [(a, b, rad) for a, b in zip(pts[:-1], pts[1:])]
        content = [15.0, -950.0, -250.0][int(rng.choice(3, p=[0.5, 0.3, 0.2]))]
        paint_segments(img, g, xyz, segs, 38.0, c.pad, where=ab)
        paint_segments(img, g, xyz, segs, content, c.pad, where=ab, shrink=0.014)
    enh = p.enh
    liver_hu = p.liver + 45 * enh
    organs = [  # (centre, radii, angle, HU)
        ((0.3, 0.02, zr - 0.3), (0.55, 0.5, 0.55), 0.2, liver_hu),
        ((0.28, 0.25, zr - 0.62), (0.06, 0.08, 0.1), 0.0, 8.0),
        ((-0.5, -0.3, zl - 0.35), (0.13, 0.2, 0.25), -0.6, p.spleen + 60 * enh),
        ((-0.08, 0.02, zl - 0.55), (0.28, 0.06, 0.07), 0.3, 42 + 50 * enh),
    ]
    liver = np.zeros(g.shape, dtype=bool)
    for i, (centre, radii, ang, hu) in enumerate(organs):
        box, m = ellipsoid_mask(g, xyz, centre, radii, c.pad, angle=ang)
        m &= ab[box]
        if i == 0:
            m &= (X[box] > -0.3) & (Z[box] < zr)
            liver[box] = m
        img[box][m] = hu + 5 * c.tex[box][m]
    # hepatic vessels: darker than parenchyma without contrast, brighter with it
    root = np.array([0.12, 0.02, zr - 0.4])
    segs = []
    for d in ([1, 0.2, 0.3], [0.8, -0.3, 0.6], [0.9, 0.5, -0.2]):
        segs += _vessel_tree(rng, root, np.array(d) / np.linalg.norm(d), 0.2, 0.03, depth=3)
    paint_segments(img, g, xyz, segs, liver_hu - 18 + 80 * enh, c.pad, where=liver, soft=c.h)
    # stomach: wall, fluid, and gas risen to the anterior side (patient supine)
    st_c, st_r = (-0.3, 0.14, zl - 0.25), (0.2, 0.19, 0.25)
    box, m = ellipsoid_mask(g, xyz, st_c, st_r, c.pad, angle=0.4)
    img[box][m & ab[box]] = 40.0
    box, m = ellipsoid_mask(g, xyz, st_c, st_r, c.pad, angle=0.4, level=0.8)
    m &= ab[box]
    img[box][m] = np.where(Y[box][m] > st_c[1] + 0.06, -1000.0, 12.0)
    # kidneys: cortex (enhancing), then renal sinus fat on the medial side
    for s in (-1.0, 1.0):
        kc = (0.33 * s, -0.22, zl + p.kidney_dz + (0.0 if s < 0 else -0.06))
        box, m = ellipsoid_mask(g, xyz, kc, (0.11, 0.15, 0.28), c.pad, angle=0.5 * s)
        img[box][m & ab[box]] = p.kidney + 140 * enh
        sinus = (kc[0] - 0.045 * s, kc[1] + 0.02, kc[2])
        box, m = ellipsoid_mask(g, xyz, sinus, (0.045, 0.07, 0.14), c.pad, angle=0.5 * s)
        img[box][m & ab[box]] = -40.0
    # psoas muscles growing caudally, lateral to the spine
    rad = 0.03 + 0.1 * np.clip((zl - 0.55 - Z) / 0.8, 0, 1)
    for s in (-1.0, 1.0):
        lev = ((X - 0.15 * s) / rad) ** 2 + ((Y - p.yv + 0.02) / (1.1 * rad)) ** 2
        ps = ab & (lev < 1) & (Z < zl - 0.55)
        img[ps] = 46.0 + 4 * c.tex[ps]
    # aorta (anterior-left of the spine) and IVC, along the whole body
    zlo, zhi = -10.0, 10.0
    vessels = [(np.array([-0.08, p.yv + 0.14, zlo]), np.array([-0.06, p.yv + 0.15, zhi]), 0.06),
               (np.array([0.12, p.yv + 0.18, zlo]), np.array([0.1, p.yv + 0.18, p.zd + 0.3]), 0.05)]
    paint_segments(img, g, xyz, vessels, p.blood, c.pad, where=c.thorax | ab)


def _ct_spine(c) -> None:
    """Vertebral bodies (cortex, cancellous bone) with discs, canal and cord, arches, processes."""
    p, X, Y, Z, img = c.p, c.X, c.Y, c.Z, c.img
    yv = p.yv
    phase = np.mod(Z / p.period + p.vphase, 1.0)
    disc = phase < 0.2
    body = ((X / 0.12) ** 2 + ((Y - yv) / 0.1) ** 2)
    in_body = body < 1
    img[in_body & disc] = 85.0
    vert = in_body & ~disc
    shell = (body > 0.72) | (phase < 0.24) | (phase > 0.96)
    img[vert] = np.where(shell[vert], 850.0, p.cancellous + 45 * c.tex[vert])
    # paraspinal muscles behind the spine
    for s in (-1.0, 1.0):
        m = ((((X - 0.12 * s) / 0.1) ** 2 + ((Y - yv + 0.23) / 0.085) ** 2) < 1) & (c.r < 1 - c.fat_r)
        img[m] = 48.0 + 4 * c.tex[m]
    # neural arch: ring around the canal during part of each vertebra's cycle
    canal = np.sqrt((X / 0.055) ** 2 + ((Y - yv + 0.16) / 0.05) ** 2)
    arch = (canal < 1.6) & (Y < yv - 0.08) & (phase > 0.3) & (phase < 0.85)
    img[arch] = 700.0
    img[canal < 1] = 12.0
    img[canal < 0.55] = 35.0
    # spinous and transverse processes: capsules per vertebra, tilted caudally
    segs = []
    zmin, zmax = float(Z.min()) - 0.3, float(Z.max()) + 0.3
    k0, k1 = int(np.floor((zmin / p.period) + p.vphase)) - 1, int(np.ceil(zmax / p.period + p.vphase)) + 1
    for k in range(k0, k1 + 1):
        zc = (k + 0.55 - p.vphase) * p.period
        segs.append((np.array([0.0, yv - 0.2, zc]), np.array([0.0, yv - 0.33, zc - 0.07]), 0.022))
        for s in (-1.0, 1.0):
            segs.append((np.array([0.04 * s, yv - 0.12, zc]), np.array([0.16 * s, yv - 0.1, zc]), 0.022))
    paint_segments(img, c.grid, (X, Y, Z), segs, 750.0, c.pad)


def _ct_ribs(c) -> None:
    """Oblique ribs in the chest wall: each one descends as it runs from the spine round to the front."""
    p, Z, img = c.p, c.Z, c.img
    r_rib = 1 - c.fat_r - 0.55 * c.muscle_r
    half_w = 0.028 / 0.75
    idx = np.nonzero(np.abs(c.r - r_rib) < half_w)
    if idx[0].size == 0:
        return
    phi = np.abs(np.arctan2(c.X[idx], -c.Y[idx]))  # 0 at the back midline, pi at the front
    dr = (c.r[idx] - r_rib[idx]) / half_w
    z = Z[idx]
    rel_run = np.clip((phi - 0.35) / 1.9, 0.0, None)
    z_top = p.zd + 1.6  # ribs above the diaphragm and over the upper abdomen
    best = np.full(z.shape, np.inf, dtype=np.float32)
    for k in range(40):
        zk = z_top - p.rib_phase - k * p.rib_gap
        if zk < p.zd - 0.75:
            break
        dz = (z - (zk - p.rib_drop * rel_run ** 1.3)) / 0.035
        best = np.minimum(best, dz ** 2 + dr ** 2)
    inside = (best < 1) & (phi > 0.3) & (phi < 2.3)
    vals = np.where(best < 0.4, 280.0, 950.0)
    target = tuple(i[inside] for i in idx)
    img[target] = vals[inside]


# ================================================================================================
# MR head
# ================================================================================================
def mr_head(shape=(128, 128, 64), spacing=(1.0, 1.0, 2.0), seed: int = 0, fill: float = 1.0) -> Volume:
    """Seeded T1-weighted head phantom in arbitrary MR units >= 0 (white matter about 700).

    Args:
        shape: ``(X, Y, Z)`` voxels; axial slices along axis 2.
        spacing: voxel size in mm; the head fills the in-plane field of view.
        seed: fully determines the output.
        fill: in-plane fraction of the field of view the head spans (see :func:`ct_body`).
    """
    grid = _check_grid(shape, spacing)
    rng = np.random.default_rng(seed)
    X, Y, Z, pad = _shrunk(*_deformed_coords(grid, rng, amp=0.015), fill)
    p = _mr_params(rng)
    img = np.zeros(grid.shape, dtype=np.float32)
    ctx = SimpleNamespace(grid=grid, X=X, Y=Y, Z=Z, pad=pad, p=p, rng=rng, img=img,
                          tex=smooth_field(grid.shape, rng, (20, 20, 14)))
    _mr_head_layers(ctx)
    _mr_brain(ctx)
    _mr_deep(ctx)
    bias = np.exp(0.12 * smooth_field(grid.shape, rng, (3, 3, 3))
                  + p.grad * (X * np.cos(p.grad_dir) + Y * np.sin(p.grad_dir)))
    img = _finish(img * bias, rng, blur=(0.5, 0.5, 0.7), noise=p.noise, grid=grid, rician=True)
    meta = {"modality": "MR", "generator": "mr_head", "seed": int(seed), "units": "arbitrary",
            "weighting": "T1", "description": "procedural T1-weighted head phantom"}
    return Volume(img, grid.affine, slice_axis=2, metadata=meta)


def _mr_params(rng: np.random.Generator) -> SimpleNamespace:
    u = rng.uniform
    return SimpleNamespace(
        a=u(0.7, 0.8), b=u(0.86, 0.95), c=u(0.95, 1.1), zc=u(-0.35, -0.15),
        scalp=u(0.035, 0.055), skull=u(0.05, 0.075), csf=u(0.015, 0.03),
        wm=u(650, 750), gm=u(420, 480), csf_v=u(120, 180), fat=u(820, 900),
        fold_wl=u(0.11, 0.15), sulcus_depth=u(0.12, 0.2), sulcus_w=u(0.25, 0.45),
        cortex=u(0.03, 0.045), vent=u(0.8, 1.6), grad=u(-0.15, 0.15), grad_dir=u(0, 2 * np.pi),
        noise=u(6, 14),
    )


def _mr_head_layers(c) -> None:
    """Scalp fat, skull (cortical tables dark, marrow bright), temporal muscles, CSF, and the face
    below the frontal lobes (skull base, orbits, nasal cavity and sinuses)."""
    p, X, Y, Z, img, g = c.p, c.X, c.Y, c.Z, c.img, c.grid
    xyz = (X, Y, Z)
    cz = np.where(Z > p.zc, p.c, 1.9 * p.c)  # the head continues into face and neck below
    a = p.a * (1 + 0.05 * np.clip(-Y, 0, None))  # a little wider at the back
    depth = (1 - np.sqrt((X / a) ** 2 + (Y / p.b) ** 2 + ((Z - p.zc) / cz) ** 2)) * 0.8
    skull_in = p.scalp + p.skull
    frac = (depth - p.scalp) / p.skull
    marrow = (frac > 0.3) & (frac < 0.7)
    img[...] = np.select([depth >= skull_in, depth > p.scalp, depth > 0],
                         [p.csf_v, np.where(marrow, 520.0, 70.0), p.fat + 30 * c.tex], 0.0)
    temporal = (depth > 0.01) & (depth < p.scalp + 0.02) & (np.abs(X) > 0.55) & (Z < p.zc + 0.35)
    img[temporal] = 360.0
    c.depth_brain = depth - skull_in - p.csf
    c.brain = c.depth_brain > 0
    face = ((0.0, 0.55, p.zc - 0.62), (0.55, 0.42, 0.32))
    box, m = ellipsoid_mask(g, xyz, *face, c.pad, level=1.2)
    img[box][m & (depth[box] > p.scalp)] = 70.0  # skull base
    c.brain[box] &= ~m
    box, m = ellipsoid_mask(g, xyz, *face, c.pad)
    m &= depth[box] > p.scalp
    img[box][m] = np.where(c.tex[box][m] > 0.4, p.fat, 330.0)  # muscle and fat of the face
    parts = [((0.3, 0.6, p.zc - 0.55), (0.16, 0.2, 0.13), p.fat),  # orbital fat
             ((0.3, 0.64, p.zc - 0.55), (0.1, 0.1, 0.1), 150.0),  # globe
             ((0.25, 0.45, p.zc - 0.9), (0.14, 0.15, 0.14), 5.0)]  # maxillary sinus
    for centre, radii, val in parts:
        for s in (-1.0, 1.0):
            box, m = ellipsoid_mask(g, xyz, (centre[0] * s, *centre[1:]), radii, c.pad)
            img[box][m & (depth[box] > 0)] = val
    box, m = ellipsoid_mask(g, xyz, (0.0, 0.55, p.zc - 0.72), (0.09, 0.25, 0.2), c.pad)
    img[box][m] = 5.0  # nasal cavity


def _mr_brain(c) -> None:
    """Folded cortex over white matter, interhemispheric fissure, cerebellum, brainstem."""
    p, X, Y, Z, img, rng = c.p, c.X, c.Y, c.Z, c.img, c.rng
    idx = np.nonzero(c.brain)
    x, y, z = X[idx], Y[idx], Z[idx] - p.zc
    d = c.depth_brain[idx]
    vals = np.full(x.shape, p.wm, dtype=np.float32)
    # sulci: V-shaped clefts along the zero set of a maze-like field, lined by grey matter; the
    # field is evaluated on partly projected coordinates so sulci run roughly inwards
    shell = np.nonzero(d < p.sulcus_depth + p.cortex)[0]
    xs, ys, zs, ds = x[shell], y[shell], z[shell], d[shell]
    k = (0.7 / (np.sqrt(xs * xs + ys * ys + zs * zs) + 1e-3)) ** 0.6
    f = np.abs(plane_wave_field((xs * k, ys * k, zs * k), rng, p.fold_wl, n_waves=24))
    grad = 2 * np.pi / (p.fold_wl * np.sqrt(3.0))  # rms slope of the field: |f| -> distance
    open_w = p.sulcus_w * np.clip(1 - ds / p.sulcus_depth, 0, None)
    v = np.where(f < open_w + grad * p.cortex, p.gm, p.wm).astype(np.float32)
    v[ds < p.cortex] = p.gm
    v[f < open_w] = p.csf_v
    vals[shell] = v
    # interhemispheric fissure above the corpus callosum, lined by medial cortex
    fiss = (np.abs(x) < 0.05) & (z > 0.12 + 0.25 * (np.abs(y) > 0.35) * (-1))
    vals[fiss & (np.abs(x) < 0.045)] = p.gm
    vals[fiss & (np.abs(x) < 0.012)] = p.csf_v
    # cerebellum: thin, mostly horizontal folia (a finer maze field) around a white-matter core,
    # under a CSF-lined tentorium
    lev = (x / 0.48) ** 2 + ((y + 0.45) / 0.3) ** 2 + ((z + 0.5) / 0.26) ** 2
    cb = np.nonzero(lev < 1)[0]
    xc, yc, zc = x[cb], y[cb], z[cb]
    fol = np.abs(plane_wave_field((xc * 0.5, yc * 0.7, zc * 1.3), rng, 0.07, n_waves=16))
    core = lev[cb] < 0.2 + 0.1 * np.sin(9 * np.arctan2(zc + 0.5, yc + 0.45))
    vals[cb] = np.where(core, p.wm * 0.95, np.where(fol < 0.3, p.csf_v,
                                                    np.where(fol < 1.2, p.gm * 1.05, p.wm * 0.95)))
    vals[(lev >= 1) & (lev < 1.12) & (z < -0.3)] = p.csf_v
    stem = (z < -0.25) & (((x / 0.11) ** 2 + ((y + 0.12) / 0.12) ** 2) < 1)
    vals[stem] = p.wm * 0.93
    img[idx] = vals + 10 * c.tex[idx]


def _mr_deep(c) -> None:
    """Lateral ventricles (curved, size per seed), third ventricle, caudate and thalamus."""
    p, X, Y, Z, img = c.p, c.X, c.Y, c.Z, c.img
    zc = p.zc + 0.3
    xyz = (X, Y, Z)
    for s in (-1.0, 1.0):  # caudate heads beside the frontal horns, thalami behind them
        for centre, radii, val in (((0.17 * s, 0.14, zc - 0.02), (0.07, 0.12, 0.11), p.gm + 70),
                                   ((0.1 * s, -0.1, zc - 0.14), (0.1, 0.14, 0.1), p.gm + 90)):
            box, m = ellipsoid_mask(c.grid, xyz, centre, radii, c.pad)
            img[box][m & c.brain[box]] = val
    # lateral ventricles: bananas diverging towards the back and bending down at both ends
    box = c.grid.index_box((-0.4, -0.6, zc - 0.4), (0.4, 0.6, zc + 0.3), c.pad)
    x, y, z = X[box], Y[box], Z[box]
    zbend = zc + 0.04 - 0.45 * y ** 2
    for s in (-1.0, 1.0):
        lv = (((x - 0.09 * s * (1 - 0.5 * y)) / (0.055 * p.vent)) ** 2 + (y / 0.42) ** 2
              + ((z - zbend) / (0.075 * p.vent)) ** 2)
        img[box][(lv < 1) & c.brain[box]] = p.csf_v
    third = (np.abs(x) < 0.012 * p.vent) & (np.abs(y + 0.05) < 0.12) & (np.abs(z - zc + 0.14) < 0.08)
    img[box][third & c.brain[box]] = p.csf_v
