import sys

from renderer.cli.main import main

if __name__ == "__main__":  # not again in a worker process that multiprocessing spawns
    sys.exit(main())
