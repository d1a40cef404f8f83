"""``python -m ldm_med.train ...`` and ``torchrun --nproc-per-node N -m ldm_med.train ...``."""
from ldm_med.cli.train import main

raise SystemExit(main())
