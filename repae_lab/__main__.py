"""`python -m repae_lab ...` is the `repae-lab` command (what torchrun and accelerate launch with `-m repae_lab`)."""
import sys

from repae_lab.commands import main

sys.exit(main())
