from gensearcher.cli import main

raise SystemExit(main())
