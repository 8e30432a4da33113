"""Named SiT sizes (REPAE_FACTS section 4, plus two workshop sizes for CPUs).

Kept in the config layer because config validation checks `sit_size` and `alignment_depth` against them
before anything is built; models/sit.py builds from this table.
"""
from __future__ import annotations

SIT_SIZES: dict[str, dict] = {
    "S": dict(depth=12, hidden_size=384, num_heads=6),
    "B": dict(depth=12, hidden_size=768, num_heads=12),
    "L": dict(depth=24, hidden_size=1024, num_heads=16),
    "XL": dict(depth=28, hidden_size=1152, num_heads=16),
    # small sizes for CPU / workshop experiments
    "W-tiny": dict(depth=4, hidden_size=128, num_heads=4),
    "W": dict(depth=6, hidden_size=256, num_heads=4),
}
