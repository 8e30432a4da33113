"""Which torch device a config's `device` names."""
from __future__ import annotations

import torch


def pick_device(name: str = "auto") -> torch.device:
    """'auto' = the GPU when there is one, else the CPU; 'cpu', 'cuda' and 'cuda:N' as named. Asking for a GPU
    that is not there is a ValueError that says so (config validation has already checked the spelling)."""
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device '{name}' asks for a GPU but this machine has none that torch can use; "
                             f"set device=cpu (or auto).")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device '{name}': this machine has {torch.cuda.device_count()} GPU(s), "
                             f"cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    return device
