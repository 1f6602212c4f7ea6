"""open_clip models with the weights a user names: a local file, or a pretrained tag resolved from the
local model cache (downloaded only where the machine is online). Offline with an empty cache, one line
says how to get the weights instead of a hub traceback."""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
from torch import nn

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


class WeightsError(ValueError):
    """The named architecture or weights cannot be had here: one line, with what to do."""


def hub_cache() -> str:
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.join(os.path.expanduser("~"), ".cache", "huggingface")), "hub"
    )
    return home


def create_clip(arch: str, pretrained: str | Path | None = None) -> nn.Module:
    """``open_clip.create_model(arch)`` with ``pretrained`` a weights file or one of ``arch``'s tags."""
    if arch not in open_clip.list_models():
        close = [name for name in open_clip.list_models() if name.lower().startswith(arch.lower()[:4])][:6]
        raise WeightsError(f"net.arch={arch}: not an open_clip model{'; e.g. ' + ', '.join(close) if close else ''}")
    if pretrained is None:
        return open_clip.create_model(arch)
    text = str(pretrained)
    if Path(text).is_file():
        return open_clip.create_model(arch, pretrained=text)
    if os.sep in text or text.endswith(WEIGHT_SUFFIXES):
        raise WeightsError(f"pretrained={text}: no such weights file")
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if text not in tags:
        raise WeightsError(f"pretrained={text}: no such tag for {arch}; its tags: {', '.join(tags) or 'none'}")
    try:
        return open_clip.create_model(arch, pretrained=text)  # the hub client reads its cache first
    except Exception as error:  # the hub client's offline and network errors, whatever their class
        cause = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise WeightsError(
            f"weights {arch}/{text} are not in the local model cache ({hub_cache()}) and cannot be downloaded "
            f"here ({cause[:120]}); on a machine online, `python -c \"import open_clip; "
            f"open_clip.create_model('{arch}', pretrained='{text}')\"` fills that cache (copy it over), or pass "
            "a weights file: pretrained=/path/to/weights.safetensors"
        ) from None
