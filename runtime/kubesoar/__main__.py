from kubesoar._cli import main

raise SystemExit(main())
