"""Record in a generation model the attribute range and distribution each preset class's training samples
cover (its ``attribute_ranges`` entry, which ``ldm_med.generate`` clamps requests to and ``--list`` shows,
and its ``attribute_quantiles``, which it draws unrequested attributes from), for a model exported before
export measured them:

    python -m ldm_med.train.ranges MODEL [MODEL ...] [--n 100]

Measures the first ``n`` training samples of each preset class (the recipe's seeds, as training draws
them) and rewrites the file (weights unchanged)."""
from __future__ import annotations

import argparse

from ldm_med.train.gendata import RANGE_SAMPLES


def record_ranges(path: str, n: int = RANGE_SAMPLES, half: bool = True) -> str:
    from ldm_med.checkpoint import load_model
    from ldm_med.config import Source
    from ldm_med.generation.model import rewrite_classes
    from ldm_med.train.gendata import preset_attribute_records

    src = load_model(path)
    crop = src.config["data"]["crop"]
    sources = [Source(**s) for s in src.config["data"]["sources"] if s.get("preset")]
    records = preset_attribute_records(sources, crop, n)

    def record(classes: dict[str, dict]) -> None:
        for name, entries in records.items():
            if name in classes:
                classes[name].update(entries)

    return str(rewrite_classes(path, record, half=half))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", metavar="MODEL")
    ap.add_argument("--n", type=int, default=RANGE_SAMPLES, help="training samples measured per class")
    args = ap.parse_args(argv)
    for path in args.models:
        print("attribute ranges and distributions written to", record_ranges(path, args.n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
