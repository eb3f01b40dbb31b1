import sys

from renderer.cli.main import main

sys.exit(main())
