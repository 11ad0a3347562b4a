"""The digits feature network: a small CNN classifier that stands in for Inception at CPU scale.

Inception features of 8x8 grey digits upsampled to 299x299 say little, so the
digits-scale runs measure FID / sFID / IS / precision / recall in the feature
space of this classifier instead. Its numbers are *digits-feature* metrics,
never to be reported as Inception FID (`extractors.FEATURE_SPACES`).

Layers, and which metric reads which (mirroring the ADM evaluator's choices):

    input   uint8 [N, 1, 8, 8] -> (u - 127.5) / 127.5 in [-1, 1]
    conv1   3x3, 1 -> 32, ReLU               [N, 32, 8, 8]  sFID: channels [:7], (h, w, c) order = 448-d
    conv2   3x3, 32 -> 32, ReLU, maxpool 2   [N, 32, 4, 4]
    conv3   3x3, 32 -> 64, ReLU, maxpool 2   [N, 64, 2, 2]
    fc      256 -> 64, ReLU                  [N, 64]        FID and precision/recall ("pool_3")
    head    64 -> 10                         [N, 10]        IS (logits)

Trained once, deterministically (fixed seed, CPU), on the train split of
`dar.data.digits` with the images passed through the uint8 sample-file
conversion, so it sees exactly what sample files hold:

    python -m dar digits-features --out results/digits_features
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dar.config import parse_with_config
from dar.data import digits
from dar.io import atomic_path, write_json
from dar.provenance import environment, file_sha256

WEIGHTS_NAME = "digits_net.pt"
INFO_NAME = "digits_net.json"
DEFAULT_OUT = "results/shared/digits_features"  # where dar.plan puts the shared network
MIN_ACCURACY = 0.97
CREATE_CMD = "python -m dar digits-features --out DIR"


# ----------------------------------------------------------------------------- model


class DigitsNet(nn.Module):
    feature_dim = 64
    spatial_channels = 32

    def __init__(self, num_classes: int = digits.NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(digits.CHANNELS, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 2 * 2, self.feature_dim)
        self.head = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [N, 1, 8, 8] in [-1, 1] -> (spatial [N, 32, 8, 8], features [N, 64], logits [N, 10])."""
        spatial = F.relu(self.conv1(x))  # (N, 32, 8, 8)
        h = F.max_pool2d(F.relu(self.conv2(spatial)), 2)  # (N, 32, 4, 4)
        h = F.max_pool2d(F.relu(self.conv3(h)), 2)  # (N, 64, 2, 2)
        features = F.relu(self.fc(h.flatten(1)))  # (N, 64)
        return spatial, features, self.head(features)


def uint8_to_input(images: Tensor) -> Tensor:
    """uint8 [N, 1, 8, 8] (sample-file pixels) -> float32 in [-1, 1], the network's input."""
    return (images.float() - 127.5) / 127.5


def split_as_uint8(split: str) -> tuple[Tensor, Tensor]:
    """A digits split as uint8 NCHW, i.e. after the sample-file conversion `digits.to_uint8`."""
    images, labels = digits.load_split(split)
    return torch.from_numpy(digits.to_uint8(images)).permute(0, 3, 1, 2).contiguous(), labels


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0  # initialisation and batch order
    epochs: int = 20  # passes over the 1500 training digits
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # AdamW learning rate, cosine-decayed to 0
    weight_decay: float = 1e-4  # AdamW weight decay
    max_shift: int = 1  # random translation augmentation, pixels (zero padding)


def _shift(x: Tensor, max_shift: int, g: torch.Generator) -> Tensor:
    """Translate each image by up to max_shift pixels in x and y, filling with background (-1)."""
    if max_shift == 0:
        return x
    n, _, h, w = x.shape
    pad = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, n), generator=g)
    out = torch.empty_like(x)
    for oy in range(2 * max_shift + 1):
        for ox in range(2 * max_shift + 1):
            idx = ((dy == oy) & (dx == ox)).nonzero().squeeze(1)
            out[idx] = pad[idx, :, oy : oy + h, ox : ox + w]
    return out


def train(cfg: TrainConfig = TrainConfig()) -> DigitsNet:
    """Train on the digits train split on CPU, single-threaded: the same weights for a seed on any machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic reductions, and faster than 2 threads for a net this small
    try:
        return _train(cfg)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: TrainConfig) -> DigitsNet:
    torch.manual_seed(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    images, labels = split_as_uint8("train")
    x = uint8_to_input(images)  # (1500, 1, 8, 8)
    model = DigitsNet()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * -(-len(x) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    model.train()
    for _ in range(cfg.epochs):
        perm = torch.randperm(len(x), generator=g)
        for idx in perm.split(cfg.batch_size):
            _, _, logits = model(_shift(x[idx], cfg.max_shift, g))
            loss = F.cross_entropy(logits, labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: DigitsNet, split: str = "heldout") -> float:
    images, labels = split_as_uint8(split)
    _, _, logits = model.eval()(uint8_to_input(images))
    return float((logits.argmax(1) == labels).float().mean())


# ----------------------------------------------------------------------------- files


class DigitsWeightsError(FileNotFoundError):
    """The digits feature network's weights are missing or not a digits-net file."""


def save(model: DigitsNet, path: str | Path, cfg: TrainConfig) -> None:
    blob = {"format": "dar-digits-net-v1", "state_dict": model.state_dict(), "train_config": asdict(cfg)}
    # Through a file object: torch.save would otherwise name the archive after the random temporary file,
    # and the same weights would get a different sha256 on every run.
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(blob, f)


def load(path: str | Path) -> DigitsNet:
    """Load trained weights; a missing or foreign file is a clear error naming the command that creates it."""
    path = Path(path)
    if not path.is_file():
        raise DigitsWeightsError(
            f"digits feature network weights not found at {path}. Create them with: {CREATE_CMD} "
            f"(then pass --weights DIR/{WEIGHTS_NAME})"
        )
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or unrelated file
        raise DigitsWeightsError(f"{path} is not a readable digits-net weights file ({e}); recreate it with: {CREATE_CMD}") from e
    if not isinstance(blob, dict) or blob.get("format") != "dar-digits-net-v1":
        raise DigitsWeightsError(f"{path} is not a digits-net weights file; recreate it with: {CREATE_CMD}")
    model = DigitsNet()
    model.load_state_dict(blob["state_dict"])
    return model.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m dar digits-features",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder for {WEIGHTS_NAME} and {INFO_NAME} (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="initialisation and batch-order seed (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training split (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=d.lr, help="AdamW learning rate, cosine-decayed (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay (default: %(default)s)")
    p.add_argument(
        "--max-shift", type=int, default=d.max_shift, help="random translation augmentation in pixels (default: %(default)s)"
    )
    p.add_argument(
        "--min-accuracy",
        type=float,
        default=MIN_ACCURACY,
        help="refuse to write weights below this held-out accuracy (default: %(default)s)",
    )
    args = parse_with_config(p, argv)
    cfg = TrainConfig(args.seed, args.epochs, args.batch_size, args.lr, args.weight_decay, args.max_shift)

    t0 = time.perf_counter()
    model = train(cfg)
    seconds = time.perf_counter() - t0
    acc = accuracy(model, "heldout")
    if acc < args.min_accuracy:
        print(f"error: held-out accuracy {acc:.4f} < --min-accuracy {args.min_accuracy}; nothing written", file=sys.stderr)
        return 1

    out = Path(args.out)
    weights = out / WEIGHTS_NAME
    save(model, weights, cfg)
    info = {
        "weights": str(weights),
        "weights_sha256": file_sha256(weights),
        "heldout_accuracy": acc,
        "train_accuracy": accuracy(model, "train"),
        "heldout_size": digits.HELDOUT,
        "train_config": asdict(cfg),
        "train_seconds": round(seconds, 2),
        "train_threads": 1,
        "environment": environment(),
    }
    write_json(out / INFO_NAME, info)
    print(f"digits net: held-out accuracy {acc:.4f} ({seconds:.1f} s), weights {weights} sha256 {info['weights_sha256'][:12]}")
    return 0
