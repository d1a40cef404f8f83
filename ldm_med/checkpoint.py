"""Checkpoints: safetensors files with the resolved config and everything a model needs, never pickle.

Two kinds of file, both safetensors (tensors + a string->string metadata header):

* a **model file** (``save_model`` / ``load_model``): the weights one network needs (a training run's
  ``model.safetensors`` holds the EMA weights, float32 or float16) and, in the metadata, as JSON strings:
  ``format`` ("ldm-med"), ``format_version``, ``ldm_med_version``, ``kind`` ("autoencoder" or
  "denoiser"), ``config`` (the resolved recipe; its ``model`` section builds the network) and ``extra``
  (``latent_scale``; ``task``, ``sde``, ``prediction``, ``residual_scale``, ``label_names`` and the
  ``autoencoder`` reference ``{"file", "sha256"}`` for denoisers);
* a **training state** (``save_state`` / ``load_state``): any nested structure of tensors and plain values
  (model, EMA, optimizer and grad-scaler state dicts, the step...). Tensors are stored under their path
  (``optimizer/state/3/exp_avg``); the structure, with placeholders for the tensors, is JSON in the
  metadata. ``--resume`` reads it.

Writes are atomic (temporary file + ``os.replace``), so an interrupted save never leaves half a file.

Integrity: every file written here carries ``sha256`` in its metadata, a digest of the other metadata
(JSON, sorted keys) and of every tensor (name, dtype, shape, raw bytes, in name order); loading recomputes
it and refuses a file that does not match (a flipped bit, a tampered config). Files written before the
checksum existed have none: the four shipped in ``ldm_med/models`` are checked against their file
sha256 pinned in ``SHIPPED_SHA256``, other such files load as before (``LoadedModel.metadata
["checksum"]`` says which case applied). A pickle (``torch.save``: .pt, .pth, .ckpt, .bin) is refused
before it is opened: unpickling can run arbitrary code. The config is parsed as JSON data, and the
network it describes is first built on the ``meta`` device (no memory) and compared with the file's
tensors, so a config that asks for huge layers is refused before anything is allocated.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ldm_med.errors import InputError

FORMAT = "ldm-med"
FORMAT_VERSION = 1
MODEL_KINDS = ("autoencoder", "denoiser", "refiner", "decoder")
STATE_KIND = "training-state"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
CHECKSUM_KEY = "sha256"
MODELS_DIR = Path(__file__).parent / "models"
# Files shipped before checksums were embedded: their whole-file sha256.
SHIPPED_SHA256 = {
    "autoencoder.safetensors": "f9e48ab23fd004034dc69539f709b8c4c5f679b907cdd12c48a65f58bedccf5a",
    "ct_refiner.safetensors": "ebdba82483fdbec8ede6d23b20276e1b093959d27a1f15a609bc51572ae946cb",
    "denoiser.safetensors": "6074405a9409d5f184b5cfe9a4201dbfbf2b547117c70be38bae82b6e28b5fe2",
    "refiner.safetensors": "dfcab13ae174118f866d7b6e6ae577adc0ccc125160df63d009fd38655996ace",
}
_CONFIG_INT_FLOOR = 4096  # config integers up to this are never suspicious (grid sizes, steps)
_PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle")


@dataclass
class LoadedModel:
    """A network rebuilt from a model file: eval mode, float32, on the requested device."""

    kind: str
    model: nn.Module
    config: dict[str, Any]
    extra: dict[str, Any]
    version: str
    path: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict, repr=False)

    def denoiser(self) -> nn.Module:
        """The preconditioned ``Denoiser`` (``x_t, t, cond, labels -> x0_hat``) of a denoiser file."""
        from ldm_med.diffusion.precond import Denoiser
        from ldm_med.diffusion.sde import VPSDE

        if self.kind != "denoiser":
            raise InputError(f"{self.path}: an {self.kind} file has no denoiser")
        return Denoiser(self.model, VPSDE.from_dict(self.extra["sde"]), self.extra.get("prediction", "v"))


# -- low level -------------------------------------------------------------------------------------
def _atomic_save(tensors: dict[str, Tensor], metadata: dict[str, str], path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    metadata = {**metadata, CHECKSUM_KEY: content_digest(tensors, metadata)}
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # safetensors creates 0600 files; ship them readable
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _cpu_copy(t: Tensor, half: bool = False) -> Tensor:
    t = t.detach().to("cpu")
    if half and t.is_floating_point():
        t = t.to(torch.float16)
    return t.contiguous().clone()  # clone: safetensors refuses tensors that share storage


def content_digest(tensors: dict[str, Tensor], metadata: dict[str, str]) -> str:
    """sha256 of the metadata (without the checksum itself) and of every tensor's name, dtype, shape
    and bytes, in name order: what ``_read`` verifies."""
    digest = hashlib.sha256()
    meta = {k: v for k, v in metadata.items() if k != CHECKSUM_KEY}
    digest.update(json.dumps(meta, sort_keys=True).encode("utf-8"))
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous()
        digest.update(json.dumps([key, str(t.dtype), list(t.shape)]).encode("utf-8"))
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _refuse_pickle(path: Path) -> None:
    """``InputError`` for a PyTorch pickle (zip or legacy format), before anything unpickles it."""
    with open(path, "rb") as f:
        head = f.read(9)
    # a safetensors file: an 8-byte little-endian header length (its first byte can be 0x80, pickle's
    # PROTO opcode), then the JSON header; such a file is never unpickled
    length = int.from_bytes(head[:8], "little") if len(head) == 9 else -1
    safetensors = head[8:9] == b"{" and 0 <= length <= path.stat().st_size - 8
    pickled = head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"
    if path.suffix.lower() in _PICKLE_SUFFIXES or (pickled and not safetensors):
        raise InputError(f"{path}: a pickle checkpoint (torch.save, {path.suffix or 'no suffix'}) is "
                         "refused: unpickling can run arbitrary code; ldm-med reads safetensors files only "
                         "(convert it with safetensors.torch.save_file where you trust the file)")


def _verify(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> str:
    """Check the embedded checksum (or the pinned one of a shipped file); returns what was checked."""
    stored = metadata.get(CHECKSUM_KEY)
    if stored is not None:
        if content_digest(tensors, metadata) != stored:
            raise InputError(f"{path}: checksum mismatch: the tensors or the header changed after the file "
                             "was written (corrupt or tampered); re-export or re-download it")
        return "sha256 verified"
    pinned = SHIPPED_SHA256.get(path.name) if path.resolve().parent == MODELS_DIR.resolve() else None
    if pinned is not None:
        if sha256_file(path) != pinned:
            raise InputError(f"{path}: this shipped model differs from the released file (sha256 mismatch); "
                             "reinstall ldm-med")
        return "shipped file, sha256 pinned"
    return "none (written before checksums)"


def _read(path: str | Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, checksum verified; ``InputError`` for anything else."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such checkpoint file")
    try:
        _refuse_pickle(path)
    except OSError as err:
        raise InputError(f"{path}: cannot read the checkpoint ({err.strerror or err})") from None
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # SafetensorError, OSError, invalid header JSON...
        detail = " ".join(str(err).split())[:300]
        raise InputError(f"{path}: not a safetensors checkpoint, or truncated ({type(err).__name__}: "
                         f"{detail})") from None
    metadata["checksum"] = _verify(path, tensors, metadata)
    return tensors, metadata


def _check_header(path: Path, metadata: dict[str, str], kinds: tuple[str, ...]) -> dict[str, Any]:
    if metadata.get("format") != FORMAT:
        raise InputError(f"{path}: not an ldm-med checkpoint (safetensors file without ldm-med metadata)")
    try:
        version = int(metadata.get("format_version", ""))
    except ValueError:
        raise InputError(f"{path}: corrupt ldm-med header (format_version "
                         f"{metadata.get('format_version')!r})") from None
    if version != FORMAT_VERSION:
        newer = "a newer" if version > FORMAT_VERSION else "an older"
        raise InputError(f"{path}: checkpoint format version {version} was written by {newer} ldm-med "
                         f"(this one reads version {FORMAT_VERSION}, ldm-med {_package_version()})")
    kind = metadata.get("kind")
    if kind not in kinds:
        hint = ("; load the run's model.safetensors, or `ldm-med train export` it" if kind == STATE_KIND
                else "")
        raise InputError(f"{path}: checkpoint kind {kind!r}, expected {' or '.join(kinds)}{hint}")
    try:
        header = {key: json.loads(metadata[key]) for key in ("config", "extra")}
    except (KeyError, json.JSONDecodeError, RecursionError) as err:
        raise InputError(f"{path}: corrupt ldm-med header ({type(err).__name__}: {err})") from None
    if not all(isinstance(v, dict) for v in header.values()):
        raise InputError(f"{path}: corrupt ldm-med header (config and extra must be JSON objects)")
    return header


def _package_version() -> str:
    from ldm_med import __version__

    return __version__


def _header(kind: str, config: dict[str, Any], extra: dict[str, Any], **more: str) -> dict[str, str]:
    return {"format": FORMAT, "format_version": str(FORMAT_VERSION), "ldm_med_version": _package_version(),
            "kind": kind, "config": json.dumps(config), "extra": json.dumps(extra), **more}


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- model files -----------------------------------------------------------------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DDP / ``torch.compile`` wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_model(path: str | Path, model: nn.Module, *, kind: str, config: dict[str, Any],
               extra: dict[str, Any] | None = None, half: bool = False) -> Path:
    """Write one network's weights with everything needed to rebuild and use it (atomic).

    Args:
        path: output ``.safetensors`` file.
        model: the network (for training runs: the EMA copy); DDP wrappers are unwrapped.
        kind: ``"autoencoder"``, ``"denoiser"``, ``"refiner"`` or ``"decoder"``.
        config: the resolved recipe; ``config["model"]`` must build ``model``.
        extra: JSON-serialisable facts (``latent_scale``, ``sde``, ...).
        half: store floating tensors as float16 (half the size); ``load_model`` returns float32.
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    if "model" not in config:
        raise ValueError("config must have a 'model' section that builds the network")
    tensors = {k: _cpu_copy(v, half) for k, v in unwrap(model).state_dict().items()}
    path = Path(path)
    _atomic_save(tensors, _header(kind, config, extra or {}, dtype="float16" if half else "float32"), path)
    return path


def build_model(kind: str, model_config: dict[str, Any]) -> nn.Module:
    """Network of ``kind`` from its ``model`` config section (random weights)."""
    from ldm_med import nets  # names import on first use: a refiner needs no MONAI

    if kind == "autoencoder":
        return nets.build_autoencoder(nets.AutoencoderConfig.from_dict(model_config))
    if kind == "decoder":
        return nets.SliceDecoder(nets.AutoencoderConfig.from_dict(model_config))
    if kind == "refiner":
        from ldm_med.nets.refiner import SliceGapRefiner

        return SliceGapRefiner(int(model_config["channels"]), int(model_config["depth"]))
    return nets.build_denoiser(nets.DenoiserConfig.from_dict(model_config))


def _config_ints(node: Any, where: str = "") -> list[tuple[str, int]]:
    """Every integer in a config tree, with its dotted key."""
    if isinstance(node, bool):
        return []
    if isinstance(node, int):
        return [(where, node)]
    if isinstance(node, dict):
        return [kv for k, v in node.items() for kv in _config_ints(v, f"{where}.{k}" if where else str(k))]
    if isinstance(node, list):
        return [kv for i, v in enumerate(node) for kv in _config_ints(v, f"{where}[{i}]")]
    return []


def _check_shapes(path: Path, kind: str, config: dict[str, Any], tensors: dict[str, Tensor]) -> None:
    """Build the network on the ``meta`` device (no memory) and compare its parameters with the file's
    tensors, so an embedded config that asks for huge layers is refused before anything is allocated."""
    model_config = config.get("model")
    if not isinstance(model_config, dict):
        raise InputError(f"{path}: embedded config has no 'model' section to build the {kind} from")
    # A channel count is some tensor's dimension and a depth at most the number of tensors: a larger
    # integer cannot describe this file, and would make even a meta-device build loop for hours.
    bound = max(_CONFIG_INT_FLOOR, 4 * len(tensors), *(max(t.shape, default=0) for t in tensors.values()))
    for key, value in _config_ints(model_config):
        if abs(value) > bound:
            raise InputError(f"{path}: embedded config model.{key} = {value} is larger than anything the "
                             f"file's tensors can hold (at most {bound}): a corrupt or hostile config")
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in build_model(kind, config["model"]).state_dict().items()}
    except MemoryError:
        raise
    except Exception as err:  # noqa: BLE001 - any config the network classes refuse
        raise InputError(f"{path}: embedded config cannot build the {kind}: "
                         f"{type(err).__name__}: {' '.join(str(err).split())[:300]}") from None
    stored = {k: tuple(v.shape) for k, v in tensors.items()}
    if shapes != stored:
        diff = sorted(set(shapes.items()) ^ set(stored.items()))[:3]
        raise InputError(f"{path}: tensors do not match the embedded {kind} config (first differences: "
                         f"{', '.join(f'{k} {s}' for k, s in diff)})")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Rebuild the network stored in a model file (or a run folder's ``model.safetensors``).

    Raises:
        InputError: naming the file, when it is missing, not safetensors, not an ldm-med model file,
        of an unknown format version, or when its tensors do not match its embedded config.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    tensors, metadata = _read(path)
    header = _check_header(path, metadata, MODEL_KINDS)
    kind, config = metadata["kind"], header["config"]
    _check_shapes(path, kind, config, tensors)
    try:
        model = build_model(kind, config["model"])
    except Exception as err:  # noqa: BLE001 - any config the network classes refuse
        raise InputError(f"{path}: embedded config cannot build the {kind}: {err}") from None
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        raise InputError(f"{path}: tensors do not match the embedded {kind} config: "
                         f"{' '.join(s.strip() for s in first[:4])[:600]}") from None
    model.to(device).eval()
    return LoadedModel(kind, model, config, header["extra"], metadata.get("ldm_med_version", "?"), path,
                       metadata)


def autoencoder_reference(ae_path: str | Path, relative_to: str | Path,
                          sha256: str | None = None) -> dict[str, str]:
    """``{"file": path relative to the folder relative_to, "sha256": ...}`` recorded in denoiser files
    (``sha256`` of the file is computed unless given)."""
    ae_path = Path(ae_path).resolve()
    rel = os.path.relpath(ae_path, Path(relative_to).resolve())
    return {"file": Path(rel).as_posix(), "sha256": sha256 or sha256_file(ae_path)}


def find_autoencoder(denoiser: LoadedModel) -> Path:
    """The autoencoder file a slice-inpainting denoiser was trained with, checked by sha256.

    Looks at the recorded relative path (from the denoiser file's folder), then for a file of the same
    name beside the denoiser.
    """
    ref = denoiser.extra.get("autoencoder")
    if not isinstance(ref, dict) or "file" not in ref:
        raise InputError(f"{denoiser.path}: the denoiser does not record its autoencoder")
    folder = Path(denoiser.path).parent
    primary = folder / ref["file"]
    if primary.is_file():
        if ref.get("sha256") and sha256_file(primary) != ref["sha256"]:
            raise InputError(f"{denoiser.path}: autoencoder {primary} differs from the one the denoiser was "
                             "trained with (sha256 mismatch); use the matching autoencoder file")
        return primary
    beside = folder / Path(ref["file"]).name  # the pair copied into one folder together
    if (beside.is_file() and beside.resolve() != Path(denoiser.path).resolve()
            and sha256_file(beside) == ref.get("sha256")):
        return beside
    raise InputError(f"{denoiser.path}: its autoencoder {ref['file']!r} was not found (looked for {primary}"
                     f" and a matching {beside.name} beside the denoiser)")


def load_inpainting_pair(denoiser_path: str | Path,
                         device: str | torch.device = "cpu") -> tuple[LoadedModel, LoadedModel]:
    """``(autoencoder, denoiser)`` of a slice-inpainting denoiser file, the autoencoder found through the
    reference the denoiser records (``find_autoencoder``)."""
    den = load_model(denoiser_path, device)
    if den.kind != "denoiser" or den.extra.get("task") != "slice-inpainting":
        raise InputError(f"{den.path}: not a slice-inpainting denoiser (kind {den.kind}, "
                         f"task {den.extra.get('task')})")
    ae = load_model(find_autoencoder(den), device)
    if ae.kind != "autoencoder":
        raise InputError(f"{ae.path}: expected an autoencoder, found a {ae.kind}")
    return ae, den


# -- training state --------------------------------------------------------------------------------
def _flatten(obj: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    """JSON structure of ``obj`` with tensors moved to ``tensors`` (under ``key``) as placeholders."""
    if isinstance(obj, Tensor):
        tensors[key] = _cpu_copy(obj)
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {"__dict__": [[k, _flatten(v, f"{key}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        items = [_flatten(v, f"{key}/{i}", tensors) for i, v in enumerate(obj)]
        return {"__tuple__": items} if isinstance(obj, tuple) else items
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} at {key} in a training state")


def _unflatten(node: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in node["__dict__"]}
    return node


def save_state(path: str | Path, state: dict[str, Any], *, config: dict[str, Any],
               extra: dict[str, Any] | None = None) -> Path:
    """Write a nested training state (state dicts, scalars) with its config (atomic)."""
    tensors: dict[str, Tensor] = {}
    structure = _flatten(state, "", tensors)
    path = Path(path)
    _atomic_save(tensors, _header(STATE_KIND, config, extra or {}, state=json.dumps(structure)), path)
    return path


def load_state(path: str | Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """``(state, config, extra)`` of a training state file; tensors on the CPU."""
    path = Path(path)
    tensors, metadata = _read(path)
    header = _check_header(path, metadata, (STATE_KIND,))
    try:
        state = _unflatten(json.loads(metadata["state"]), tensors)
    except (KeyError, json.JSONDecodeError, TypeError, ValueError) as err:
        raise InputError(f"{path}: corrupt training state ({err})") from None
    return state, header["config"], header["extra"]


# -- export ----------------------------------------------------------------------------------------
def export_model(run: str | Path, out: str | Path, *, half: bool = False,
                 autoencoder_out: str | Path | None = None) -> Path:
    """Write a run's EMA weights as a shippable model file.

    Args:
        run: a run folder (its ``model.safetensors``) or a model file.
        out: the output ``.safetensors``.
        half: store float16.
        autoencoder_out: slice-inpainting denoisers only: also export the autoencoder there (and record
            it); by default the output records the autoencoder the run used, relative to ``out``'s folder.
    """
    src = load_model(run)
    out = Path(out)
    extra = dict(src.extra)
    if src.kind == "denoiser" and "autoencoder" in src.extra:  # latent denoisers: re-point the reference
        ae_path = find_autoencoder(src)
        if autoencoder_out is not None:
            ae_path = export_model(ae_path, autoencoder_out, half=half)
        extra["autoencoder"] = autoencoder_reference(ae_path, out.parent)
    elif autoencoder_out is not None:
        raise InputError(f"{src.path}: --autoencoder-out applies to latent denoisers only")
    return save_model(out, src.model, kind=src.kind, config=src.config, extra=extra, half=half)
