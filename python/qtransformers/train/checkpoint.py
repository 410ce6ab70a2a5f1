"""Atomic checkpoints: model weights in safetensors, optimizer/scheduler/RNG state beside them.

A checkpoint is a folder ``DIR/ckpt-<step>`` holding ``model.safetensors``, ``trainer.pt`` and
``config.json``. It is written under a temporary name, flushed to disk and renamed into place
(``os.replace``); then the one-line file ``DIR/latest`` is replaced the same way. A process killed
at any moment therefore leaves ``latest`` naming a complete checkpoint (or no checkpoint).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from qtransformers.exceptions import InvalidArgumentError
from qtransformers.models import ByteLM, ByteLMConfig

LATEST = "latest"
MODEL_FILE = "model.safetensors"
STATE_FILE = "trainer.pt"
CONFIG_FILE = "config.json"


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    _fsync(tmp)
    os.replace(tmp, path)


def save_checkpoint(out: str | Path, step: int, model: ByteLM, state: dict, meta: dict, *, keep: int = 2) -> Path:
    """Write checkpoint ``out/ckpt-<step>`` atomically, point ``out/latest`` at it, keep the newest ``keep``."""
    out = Path(out)
    name = f"ckpt-{step:08d}"
    final, tmp = out / name, out / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(weights, str(tmp / MODEL_FILE), metadata={"step": str(step)})
    torch.save({"step": step, **state}, tmp / STATE_FILE)
    (tmp / CONFIG_FILE).write_text(json.dumps({"step": step, "model": model.config.to_dict(), **meta}, indent=2))
    for f in tmp.iterdir():
        _fsync(f)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    _write_text_atomic(out / LATEST, name + "\n")
    for old in sorted(out.glob("ckpt-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(path: str | Path) -> Path | None:
    """The checkpoint folder for ``path``: a run folder (its ``latest``) or a checkpoint folder; None if absent."""
    path = Path(path)
    if (path / MODEL_FILE).is_file():
        return path
    latest = path / LATEST
    if latest.is_file():
        folder = path / latest.read_text().strip()
        if (folder / MODEL_FILE).is_file():
            return folder
    return None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[ByteLM, dict, dict]:
    """(model, trainer state, config.json contents) of the checkpoint at ``path`` (run or checkpoint folder)."""
    folder = find_checkpoint(path)
    if folder is None:
        raise InvalidArgumentError(f"no checkpoint found at {str(path)!r} (expected {MODEL_FILE} or a {LATEST} file)")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    model = ByteLM(ByteLMConfig.from_dict(meta["model"]))
    model.load_state_dict(load_file(str(folder / MODEL_FILE)))
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    return model.to(device), state, meta
