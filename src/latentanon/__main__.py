from latentanon.cli import main

raise SystemExit(main())
