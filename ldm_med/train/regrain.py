"""Add decoder-grain spectra and envelopes (``ldm_med.generation.grain``) to a generation model
trained before export recorded them: ``python -m ldm_med.train.regrain MODEL [MODEL ...]``
(rewrites each file in place)."""
from __future__ import annotations

import numpy as np

from ldm_med.generation.grain import measure_grain


def add_profiles(path: str, out: str | None = None, per_class: int | None = None, half: bool = True) -> str:
    """Measure the grain of every preset class of the generation model ``path`` on its training samples
    (the recipe's first seeds, as training draws them) and write the model again with ``grain``,
    ``grain_envelope`` and ``decoder_bias`` (and a re-measured ``residual_std``) in each class; ``out``
    defaults to ``path``."""
    from ldm_med.checkpoint import load_model
    from ldm_med.generation.model import load_generation_model, rewrite_classes
    from ldm_med.train.gendata import preset_sample

    src, model = load_model(path), load_generation_model(path)
    seeds = {s["preset"]: int(s["seed"]) for s in src.config["data"]["sources"] if s.get("preset")}
    per_class = per_class or (24 if model.dims == 2 else 6)

    def add(classes: dict[str, dict]) -> None:
        for info in classes.values():
            if info.get("preset") in seeds:
                first = seeds[info["preset"]]
                x = np.stack([preset_sample(info["preset"], first + i, model.size)[0]
                              for i in range(per_class)])
                info.update(measure_grain(model.ae, x).as_class_info())

    return str(rewrite_classes(path, add, out, half))

if __name__ == "__main__":
    import sys

    for model_file in sys.argv[1:]:
        print("grain profiles written to", add_profiles(model_file))
