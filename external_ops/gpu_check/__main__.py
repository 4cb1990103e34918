"""`python external_ops/gpu_check ...` (or `python -m gpu_check` from external_ops/): see cli.py."""
import os
import sys

if not __package__:  # run as a directory: make the package importable by its name
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from gpu_check.cli import main
else:
    from .cli import main

sys.exit(main())
