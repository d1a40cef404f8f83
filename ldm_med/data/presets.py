"""Generation presets: what ``ldm-med generate`` can synthesise out of the box, and how it is trained.

A :class:`Preset` ties one procedural generator to everything the generative model needs to know about it:

* its class label (one per preset) and the natural file format of the field (NIfTI, MRC, FITS);
* the 2D and 3D sample it draws per seed (``sample``), at a fixed physical voxel size;
* one continuous **attribute** the generator controls, with its unit and the range the training data
  covers, and ``measure`` -- the same quantity computed from any image or volume, so a requested value can
  be checked against the generated sample (``bench/generation.py``);
* a fixed intensity stretch between physical units and the model's about-[-1, 1] range (linear for CT,
  MR and density maps, asinh for astronomical counts, as astronomers display them).

=================  ====================  =======================================================
preset             attribute             how the generator varies it
=================  ====================  =======================================================
``medical-ct``     ``body_diameter`` mm  ``ct_body(fill=...)``: the body spans 45-100% of the FOV
``medical-mr``     ``head_diameter`` mm  ``mr_head(fill=...)``: the head spans 50-100% of the FOV
``molecular``      ``radius_of_gyration``  ``molecular_density(radius=...)``: chains packed in 8-26 angstrom
                   angstrom
``astronomical``   ``n_sources``         ``astro_field(source_density=...)``, 0.3-4x the default
=================  ====================  =======================================================

2D samples are axial slices (CT, MR), projections along z (molecular: like cryo-EM particle images) and
sky images (astronomical); 3D samples are volumes (spectral cubes for astronomy).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ldm_med.volume import Volume


@dataclass(frozen=True)
class Stretch:
    """Fixed map between physical values and the model's range: ``linear`` sends ``lo -> -1, hi -> 1``;
    ``asinh`` sends ``asinh((x - lo) / scale)`` linearly so that ``lo -> -1`` and ``hi -> 1``."""

    kind: str
    lo: float
    hi: float
    scale: float = 1.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.kind == "asinh":
            top = np.arcsinh((self.hi - self.lo) / self.scale)
            return (2.0 * np.arcsinh((x - self.lo) / self.scale) / top - 1.0).astype(np.float32)
        return (2.0 * (x - self.lo) / (self.hi - self.lo) - 1.0).astype(np.float32)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return self._inverse(np.asarray(y, dtype=np.float32), np.sinh).astype(np.float32)

    def inverse_tensor(self, y):
        """``inverse`` on a torch tensor, differentiable (attribute steering)."""
        return self._inverse(y, lambda a: a.sinh())

    def _inverse(self, y, sinh):
        if self.kind == "asinh":
            top = np.arcsinh((self.hi - self.lo) / self.scale)  # float64: the numpy path computes in it
            return self.lo + self.scale * sinh((y + 1.0) * top / 2.0)
        return self.lo + (y + 1.0) * (self.hi - self.lo) / 2.0

    def to_dict(self) -> dict:
        return {"kind": self.kind, "lo": self.lo, "hi": self.hi, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> Stretch:
        return cls(str(d["kind"]), float(d["lo"]), float(d["hi"]), float(d.get("scale", 1.0)))


@dataclass(frozen=True)
class Attribute:
    """A continuous property of a sample: name, unit and the range the training data covers."""

    name: str
    unit: str
    low: float
    high: float
    description: str

    def normalise(self, value: float) -> float:
        """``low -> -1``, ``high -> 1`` (the value the model is conditioned on)."""
        return 2.0 * (float(value) - self.low) / (self.high - self.low) - 1.0

    def to_dict(self) -> dict:
        return {"name": self.name, "unit": self.unit, "low": self.low, "high": self.high,
                "description": self.description}

    @classmethod
    def from_dict(cls, d: dict) -> Attribute:
        return cls(str(d["name"]), str(d["unit"]), float(d["low"]), float(d["high"]),
                   str(d.get("description", "")))


@dataclass(frozen=True)
class Preset:
    """One kind of synthetic volume (see the module docstring)."""

    name: str
    modality: str
    natural_format: str              # "nifti", "mrc" or "fits"
    spatial_unit: str                # "mm", "angstrom" or "pixel"
    spacing: dict[int, tuple[float, ...]]   # dims -> voxel size of the samples
    size: dict[int, tuple[int, ...]]        # dims -> default sample shape
    attribute: Attribute
    stretch: Stretch
    draw: Callable[[np.random.Generator, int, tuple[int, ...], tuple[float, ...], int], np.ndarray]
    measure_fn: Callable[[np.ndarray, tuple[float, ...]], float]
    description: str

    def sample(self, seed: int, dims: int, size: tuple[int, ...] | None = None) -> Volume:
        """The training sample of ``seed``: an image ``(H, W)`` or a volume ``(X, Y, Z)``, physical units."""
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims}")
        size = tuple(int(s) for s in (size or self.size[dims]))
        if len(size) != dims:
            raise ValueError(f"a {dims}D {self.name} sample needs {dims} sizes, got {list(size)}")
        spacing = self.spacing[dims]
        rng = np.random.default_rng([seed, 7919])  # the attribute draw, independent of the generator's
        data = self.draw(rng, seed, size, spacing, dims)
        return self.as_volume(data, {"generator_seed": int(seed)})

    def measure(self, data: np.ndarray) -> float:
        """The attribute of a 2D image or a 3D volume in physical units (``self.attribute.unit``)."""
        data = np.asarray(data, dtype=np.float32)
        return float(self.measure_fn(data, self.spacing[data.ndim]))

    def as_volume(self, data: np.ndarray, metadata: dict | None = None) -> Volume:
        """A 2D image or 3D array in physical units as a :class:`Volume` with the preset's geometry
        (a 2D image becomes one slice along z)."""
        data = np.asarray(data, dtype=np.float32)
        spacing = self.spacing[data.ndim]
        if data.ndim == 2:
            data, spacing = data[:, :, None], (*spacing, 1.0)
        meta = {"modality": self.modality, "preset": self.name, "spatial_unit": self.spatial_unit,
                **(metadata or {})}
        return Volume(data, np.diag([*spacing, 1.0]), slice_axis=2, metadata=meta)


# -- attribute measures ---------------------------------------------------------------------------
def _mid_plane(data: np.ndarray) -> np.ndarray:
    return data if data.ndim == 2 else data[:, :, data.shape[2] // 2]


def equivalent_diameter(data: np.ndarray, spacing: tuple[float, ...], threshold: float) -> float:
    """Diameter (physical units) of the disc with the area of the largest region above ``threshold``
    on the middle axial plane, holes filled (lungs, ventricles)."""
    mask = ndimage.binary_fill_holes(_mid_plane(data) > threshold)
    labels, n = ndimage.label(mask)
    if n == 0:
        return 0.0
    area = np.bincount(labels.ravel())[1:].max() * spacing[0] * spacing[1]
    return float(2.0 * np.sqrt(area / np.pi))


def radius_of_gyration(data: np.ndarray, spacing: tuple[float, ...]) -> float:
    """Radius of gyration (physical units) of the particle: the density above the background (median)
    within the connected region, lightly smoothed, that holds the density peak and stands 10% of the
    peak above the background (dilated by two voxels). Blind to noise and to anything not attached to
    the particle (a decoder's edge ringing, a neighbour); on generator samples within 0.6 angstrom of
    the plain radius of gyration of the density above median + 3 sigma."""
    blob, bg = particle_region(data)
    w = np.clip(data.astype(np.float64) - bg, 0.0, None) * blob
    if w.sum() <= 0:
        return 0.0
    grids = np.meshgrid(*[np.arange(n) * s for n, s in zip(data.shape, spacing)], indexing="ij")
    centre = [float((g * w).sum() / w.sum()) for g in grids]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre))
    return float(np.sqrt((r2 * w).sum() / w.sum()))


def particle_region(data: np.ndarray) -> tuple[np.ndarray, float]:
    """The particle's region (bool, the shape of ``data``) and the background, as ``radius_of_gyration``
    chooses them; an empty region when nothing stands above the background."""
    smooth = ndimage.gaussian_filter(data.astype(np.float64), 1.0)
    bg, peak = float(np.median(smooth)), float(smooth.max())
    if peak <= bg:
        return np.zeros(data.shape, dtype=bool), bg
    labels, _ = ndimage.label(smooth > bg + 0.1 * (peak - bg))
    return ndimage.binary_dilation(labels == labels.flat[int(np.argmax(smooth))], iterations=2), bg


def count_sources(data: np.ndarray, spacing: tuple[float, ...] = (1.0, 1.0)) -> float:
    """Compact sources on the sky image (a cube is averaged over channels): local maxima of the lightly
    smoothed image standing 5 sigma above the local sky (a 15-pixel median), sigma the pixel noise
    measured from neighbour differences (blind to nebulae and galaxies)."""
    img = (data if data.ndim == 2 else data.mean(axis=2)).astype(np.float64)
    diff = (img[1:, :] - img[:-1, :]) / np.sqrt(2.0)
    sigma = 1.4826 * float(np.median(np.abs(diff - np.median(diff)))) + 1e-12
    smooth = ndimage.gaussian_filter(img, 1.0)
    sky = ndimage.median_filter(img, size=15)
    peaks = (smooth == ndimage.maximum_filter(smooth, size=5)) & (smooth - sky > 5.0 * sigma)
    return float(peaks.sum())


# -- draws: the generator call of one seed, with the attribute's knob drawn from the seed ----------
def _phantom_draw(name: str, fill_low: float, slab_spacing: float, first: int):
    """The draw of a phantom generator (``ct_body``, ``mr_head``) whose ``fill`` is the knob: a 3D volume,
    or one slice (from ``first`` on) of a thin stack of ``slab_spacing`` mm slices, so the anatomy along z
    still varies per seed."""
    def draw(rng, seed, size, spacing, dims):
        from ldm_med.data import phantoms

        generator = getattr(phantoms, name)
        fill = float(rng.uniform(fill_low, 1.0))
        if dims == 3:
            return generator(shape=size, spacing=spacing, seed=seed, fill=fill).data
        depth = 9
        vol = generator(shape=(*size, depth), spacing=(*spacing, slab_spacing), seed=seed, fill=fill).data
        return vol[:, :, int(rng.integers(first, depth - 2))]

    return draw


_draw_ct = _phantom_draw("ct_body", 0.45, 30.0, 2)
_draw_mr = _phantom_draw("mr_head", 0.5, 12.0, 3)


def _draw_molecule(rng, seed, size, spacing, dims):
    from ldm_med.data.science import molecular_density

    radius = float(rng.uniform(8.0, 26.0))
    if dims == 3:
        return molecular_density(shape=size, spacing=spacing, seed=seed, radius=radius).data
    depth = 64  # project a slab along z, as a cryo-EM particle image does
    vol = molecular_density(shape=(*size, depth), spacing=(*spacing, spacing[0]), seed=seed,
                            radius=radius).data
    return vol.mean(axis=2)


def _draw_astro(rng, seed, size, spacing, dims):
    from ldm_med.data.science import astro_field

    density = float(np.exp(rng.uniform(np.log(0.3), np.log(4.0))))
    out = astro_field(shape=size, seed=seed, source_density=density)
    return out if dims == 2 else out.data


PRESETS: dict[str, Preset] = {
    "medical-ct": Preset(
        name="medical-ct", modality="CT", natural_format="nifti", spatial_unit="mm",
        spacing={2: (3.0, 3.0), 3: (6.0, 6.0, 5.0)}, size={2: (128, 128), 3: (64, 64, 64)},
        attribute=Attribute("body_diameter", "mm", 150.0, 290.0,
                            "equivalent diameter of the body on the middle axial slice"),
        stretch=Stretch("linear", -1000.0, 1000.0), draw=_draw_ct,
        measure_fn=lambda d, s: equivalent_diameter(d, s, -500.0),
        description="thorax/abdomen CT in Hounsfield units"),
    "medical-mr": Preset(
        name="medical-mr", modality="MR", natural_format="nifti", spatial_unit="mm",
        spacing={2: (2.0, 2.0), 3: (4.0, 4.0, 3.0)}, size={2: (128, 128), 3: (64, 64, 64)},
        attribute=Attribute("head_diameter", "mm", 120.0, 210.0,
                            "equivalent diameter of the head on the middle axial slice"),
        stretch=Stretch("linear", 0.0, 1000.0), draw=_draw_mr,
        measure_fn=lambda d, s: equivalent_diameter(d, s, 100.0),
        description="T1-weighted head MR, arbitrary units"),
    "molecular": Preset(
        name="molecular", modality="EM", natural_format="mrc", spatial_unit="angstrom",
        spacing={2: (1.0, 1.0), 3: (1.5, 1.5, 1.5)}, size={2: (128, 128), 3: (64, 64, 64)},
        attribute=Attribute("radius_of_gyration", "angstrom", 6.0, 17.0,
                            "radius of gyration of the particle's density above the background"),
        stretch=Stretch("asinh", -0.05, 0.8, scale=0.15), draw=_draw_molecule,
        measure_fn=radius_of_gyration,
        description="cryo-EM-like density map of a protein-like molecule"),
    "astronomical": Preset(
        name="astronomical", modality="ASTRO", natural_format="fits", spatial_unit="pixel",
        spacing={2: (1.0, 1.0), 3: (1.0, 1.0, 1.0)}, size={2: (128, 128), 3: (64, 64, 64)},
        attribute=Attribute("n_sources", "count", 3.0, 60.0,
                            "compact sources 5 sigma above the local sky"),
        stretch=Stretch("asinh", 100.0, 3000.0, scale=10.0), draw=_draw_astro,
        measure_fn=count_sources,
        description="sky image (2D) or spectral cube (3D) in counts"),
}


def get_preset(name: str) -> Preset:
    """The preset ``name``, or ``ValueError`` listing the valid ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets are {', '.join(PRESETS)}")
    return PRESETS[name]
