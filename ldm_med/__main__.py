from ldm_med.cli import main

raise SystemExit(main())
