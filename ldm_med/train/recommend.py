"""Record the sampling settings measured best for one class of a generation model in the model file
(its class's ``sampling`` entry, read by ``ldm_med.generate`` when no ``--guidance`` is given):

    python -m ldm_med.train.recommend MODEL CLASS --guidance G [--attr-guidance A] [--free-attributes]
        [--candidates K] [--steer S] --why TEXT

Rewrites the file (weights unchanged); ``--clear`` removes the entry."""
from __future__ import annotations

import argparse


def record_sampling(path: str, name: str, sampling: dict | None, half: bool = True) -> str:
    """Write the model ``path`` again with ``sampling`` (or none) as class ``name``'s settings."""
    from ldm_med.errors import InputError
    from ldm_med.generation.model import rewrite_classes

    def record(classes: dict[str, dict]) -> None:
        if name not in classes:
            raise InputError(f"{path}: no class {name!r}; it has {', '.join(classes) or 'none'}")
        classes[name].pop("sampling", None)
        if sampling:
            classes[name]["sampling"] = sampling

    return str(rewrite_classes(path, record, half=half))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model"), ap.add_argument("cls", metavar="CLASS")
    ap.add_argument("--guidance", type=float), ap.add_argument("--attr-guidance", type=float)
    ap.add_argument("--free-attributes", action="store_true",
                    help="leave attributes not requested unconditioned instead of drawing them")
    ap.add_argument("--candidates", type=int,
                    help="candidates per sample when an attribute is requested (the closest measured kept)")
    ap.add_argument("--steer", type=float,
                    help="steering strength toward a requested attribute with a differentiable measure")
    ap.add_argument("--why", default="", help="the measurement behind the setting (kept in the file)")
    ap.add_argument("--clear", action="store_true")
    args = ap.parse_args(argv)
    if args.guidance is None and not args.clear:
        ap.error("--guidance is required (or --clear)")
    sampling = None
    if not args.clear:
        sampling = {"guidance": args.guidance, "why": args.why}
        if args.attr_guidance is not None:
            sampling["attr_guidance"] = args.attr_guidance
        if args.free_attributes:
            sampling["draw_attributes"] = False
        if args.candidates and args.candidates > 1:
            sampling["candidates"] = args.candidates
        if args.steer:
            sampling["steer"] = args.steer
    print("written", record_sampling(args.model, args.cls, sampling))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
