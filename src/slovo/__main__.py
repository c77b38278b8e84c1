from slovo.cli import main

raise SystemExit(main())
