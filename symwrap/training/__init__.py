"""Training: :func:`fit`, a small loop with progress bars, checkpoints and DistributedDataParallel.

::

    history = symwrap.training.fit(model, train_loader, val_loader, epochs=10, checkpoint_dir="runs/c4")

``python -m symwrap.training`` (or ``torchrun --nproc_per_node=2 -m symwrap.training``) trains a
small wrapped CNN on synthetic images: a check that a machine's (distributed) set-up works.
"""

from .callbacks import Callback, CSVLogger, EarlyStopping, FitState, TensorBoardLogger
from .checkpoint import CHECKPOINT_FILE
from .distributed import DistributedContext, distribute_loader
from .history import History
from .loop import default_loss, fit, move_to, split_batch, unwrap_model

__all__ = [
    "CHECKPOINT_FILE",
    "CSVLogger",
    "Callback",
    "EarlyStopping",
    "FitState",
    "TensorBoardLogger",
    "DistributedContext",
    "History",
    "default_loss",
    "distribute_loader",
    "fit",
    "move_to",
    "split_batch",
    "unwrap_model",
]
