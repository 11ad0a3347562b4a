"""Training: config, loop, checkpoints. Entry point: python -m dar train."""

from dar.train.config import TrainConfig
from dar.train.loop import TrainingDiverged, train

__all__ = ["TrainConfig", "TrainingDiverged", "train"]
