"""The README's figure of the shipped 2D generation model: per preset, four samples with the attribute
swept over its trained range (labels: requested -> measured).

    python bench/generation_figure.py docs/generation_2d.png
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ldm_med  # noqa: E402
from ldm_med.pipelines.gallery import save_gallery  # noqa: E402


def main(out: str) -> int:
    volumes, labels = [], []
    for preset, spec in ldm_med.preset_attributes().items():
        for i, value in enumerate(np.linspace(spec["low"], spec["high"], 4)):
            opts = ldm_med.GenerateOptions(preset, n=1, seed=100 + i, attrs=((spec["name"], float(value)),))
            vol = ldm_med.generate(opts).volumes[0]
            measured = vol.metadata["provenance"]["measured"][spec["name"]]
            volumes.append(vol)
            labels.append(f"{preset}: {spec['name']} {value:.0f} -> {measured:.0f}")
    save_gallery(volumes, out, title="SYNTHETIC: ldm-med generate --dims 2, attribute requested -> measured",
                 labels=labels)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1] if len(sys.argv) > 1 else "docs/generation_2d.png"))
