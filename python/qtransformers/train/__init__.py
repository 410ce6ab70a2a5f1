"""Training, checkpoints, generation and the ablation study for byte-level language models."""

from qtransformers.train.checkpoint import find_checkpoint, load_checkpoint, save_checkpoint
from qtransformers.train.curriculum import Curriculum, Stage
from qtransformers.train.data import ByteDataset, decode, encode
from qtransformers.train.trainer import TrainConfig, Trainer, lr_factor, train

__all__ = [
    "ByteDataset",
    "Curriculum",
    "Stage",
    "TrainConfig",
    "Trainer",
    "decode",
    "encode",
    "find_checkpoint",
    "load_checkpoint",
    "lr_factor",
    "save_checkpoint",
    "train",
]
