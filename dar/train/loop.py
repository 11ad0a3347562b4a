"""The flow-matching training loop: any registered model and routing, 1..N processes.

Reproducibility by construction: the randomness of global step s (which
samples, flips, class drops, times and noise) is drawn from a generator
seeded with (seed, s) for the whole global batch, and each process takes its
slice. The same config therefore gives the same optimisation on 1 or 32
processes (up to float reduction order), and resuming from the checkpoint of
step s continues exactly as if never stopped.

Loss per step: (1/G) sum_i |v(x_t_i, t_i, y_i) - (x1_i - x0_i)|^2 over the
global batch G, accumulated over micro-batches; DDP averages over processes.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from dar import distributed, logs
from dar.config import ConfigError, to_dict
from dar.data.latents import LatentCache
from dar.errors import HarnessError
from dar.fingerprint import IdentityMismatch, differences, fingerprint
from dar.io import write_json
from dar.lock import FolderBusy, FolderLock
from dar.models import build_model
from dar.models.matched import matched_width
from dar.provenance import environment, file_sha256
from dar.repa import HiddenCapture, alignment_loss, build_encoder, build_projector
from dar.routing import AlphaRecorder
from dar.train import checkpoint as ckpt_io
from dar.train.config import TrainConfig
from dar.train.optim import ema_update, load_state, make_optimizer
from dar.train.sinks import METRICS_FILE, open_sinks
from dar.transport.path import interpolate

log = logs.get("train")


class TrainingDiverged(HarnessError, RuntimeError):
    """Non-finite loss, gradients or weights: the run stops before saving anything from them."""


def step_generator(seed: int, step: int, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    return g


class DataOrder:
    """Epoch permutations of the dataset; global step s reads positions s*G .. s*G+G-1 of their concatenation."""

    def __init__(self, n: int, global_batch: int, seed: int) -> None:
        self.n, self.G, self.seed = n, global_batch, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            g = torch.Generator().manual_seed((self.seed * 7_919 + epoch + 1) % (2**63 - 1))
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def positions(self, step: int) -> torch.Tensor:
        k = torch.arange(step * self.G, (step + 1) * self.G)
        epochs, offsets = k // self.n, k % self.n
        out = torch.empty(self.G, dtype=torch.long)
        for e in epochs.unique().tolist():
            sel = epochs == e
            out[sel] = self._perm(e)[offsets[sel]]
        return out

    def position_of(self, step: int) -> dict[str, int]:
        k = step * self.G
        return {"epoch": k // self.n, "offset": k % self.n}


def split_batch(cfg: TrainConfig, world: int) -> tuple[int, int]:
    """(micro-batch size, accumulation steps) per process for the run's global batch."""
    if cfg.global_batch % world:
        raise ConfigError(f"global_batch={cfg.global_batch} is not divisible by the {world} processes")
    local = cfg.global_batch // world
    micro = min(cfg.micro_batch or local, local)
    if local % micro:
        raise ConfigError(f"per-process batch {local} is not divisible by micro_batch={micro}; pick a divisor")
    return micro, local // micro


def routing_stats(rec: AlphaRecorder) -> dict[str, float]:
    """Normalised entropy and max weight of the batch-mean routing distributions, averaged over aggregators."""
    ents, maxes = [], []
    for sources, alpha in rec.weights.values():
        p = alpha.mean(0)  # [N]
        maxes.append(p.max().item())
        if len(sources) > 1:
            ents.append((-(p * p.clamp_min(1e-12).log()).sum() / math.log(len(sources))).item())
    if not maxes:
        return {}
    return {"routing_entropy": sum(ents) / max(len(ents), 1), "routing_max_weight": sum(maxes) / len(maxes)}


def _diverged(run_dir: Path, what: str) -> TrainingDiverged:
    last = ckpt_io.newest(run_dir)
    return TrainingDiverged(
        f"{what}; stopping without writing a checkpoint. Newest checkpoint: "
        f"{last or 'none (the run had not checkpointed yet)'} (weights are checked finite before every save). A lower "
        "learning rate or --grad-clip is a new configuration: rerun under it (the workflow trains it in a new run "
        "folder; by hand pass --restart true or a new --out)"
    )


def _check_finite(run_dir: Path, step: int, **states: dict) -> None:
    """Every tensor of the states to be saved (model, EMA, optimizer moments) must be finite."""
    for name, state in states.items():
        flat = {k: v for k, v in state.items() if torch.is_tensor(v)}
        if name == "opt":
            flat = {f"{i}.{k}": v for i, s in state["state"].items() for k, v in s.items() if torch.is_tensor(v)}
        bad = ckpt_io.non_finite(flat)
        if bad:
            raise _diverged(
                run_dir, f"the {name} state holds non-finite values at step {step} ({len(bad)} tensors, e.g. {bad[0]})"
            )


def _memory_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB on Linux
    except ImportError:
        return float("nan")


def run_inputs(cfg: TrainConfig, data: LatentCache) -> dict[str, str]:
    """Content hashes of the files a run reads besides its config (checked on resume like the identity)."""
    out = {"latents_sha256": data.content_sha256}
    if cfg.repa and cfg.repa_encoder_weights and Path(cfg.repa_encoder_weights).is_file():
        out["repa_encoder_sha256"] = file_sha256(cfg.repa_encoder_weights)
    return out


def check_resumable(state: dict, path: Path, identity: dict, inputs: dict, run_dir: Path, finished: bool) -> None:
    """Refuse to resume a checkpoint made under another identity, or (unless the run is already finished, so that
    nothing more is computed from them) from other input files."""
    ways_out = [
        "train into a new run folder (--out; a grid whose settings changed names a new folder by itself)",
        f"pass --restart true to set this folder's checkpoints aside (kept under {run_dir}/replaced-<time>/) and "
        "train from scratch",
    ]
    if differences(state.get("identity"), identity):
        raise IdentityMismatch(
            f"checkpoint {path} of run folder", run_dir, {"identity": state.get("identity")}, {"identity": identity}, ways_out
        )
    diff = differences(state.get("inputs"), inputs)
    if diff and finished:
        log.info("the run is finished; its input files changed since (%s), which it no longer reads", diff[0][0])
    elif diff:
        raise IdentityMismatch(
            f"checkpoint {path} of run folder", run_dir, {"inputs": state.get("inputs")}, {"inputs": inputs},
            ["rebuild or restore the inputs it was trained from", *ways_out],
        )  # fmt: skip


def check_milestones(cfg: TrainConfig, run_dir: Path, start: int, resume: Path | None, is_main: bool) -> None:
    """Every milestone the run has already passed must have its checkpoint: they are written only in passing.
    The step the run stopped at is its newest checkpoint (latest.pt), which is kept as that milestone."""
    missing = [m for m in sorted(cfg.milestones) if m <= start and not ckpt_io.milestone_path(run_dir, m).is_file()]
    if start in missing and resume is not None and resume.name == ckpt_io.LATEST:  # checked and verified by the loader
        if is_main:
            ckpt_io.save(ckpt_io.milestone_path(run_dir, start), ckpt_io.load(resume))
        missing.remove(start)
    if missing:
        raise ConfigError(
            f"run folder {run_dir} is at step {start} but kept no checkpoint at milestone(s) {missing} (they were not "
            "milestones when the run passed them, and a checkpoint is only written as a run passes its step). Either "
            "train into a new run folder (--out), or pass --restart to set this folder's checkpoints aside and retrain"
        )


def set_aside(run_dir: Path) -> Path | None:
    """Move a run folder's checkpoints, metrics and records into <run_dir>/replaced-<UTC time>/ (nothing is deleted)."""
    names = ["checkpoints", METRICS_FILE, "tensorboard", "config.json", "done.json", "loss.png"]
    present = [n for n in names if (run_dir / n).exists()]
    if not present:
        return None
    dest = run_dir / time.strftime("replaced-%Y%m%dT%H%M%SZ", time.gmtime())
    dest.mkdir(parents=True, exist_ok=False)
    for n in present:
        os.replace(run_dir / n, dest / n)
    return dest


def train(cfg: TrainConfig) -> Path:
    cfg.validate()
    info = distributed.init(cfg.device)
    run_dir = Path(cfg.out)
    data = LatentCache(cfg.data)  # a missing cache is reported before anything is written
    # One job per run folder: rank 0 holds <run_dir>/.lock for the whole run (dar/lock.py); every rank learns
    # whether it got it before any collective, so a refused job stops on all ranks instead of hanging in one.
    with contextlib.ExitStack() as stack:
        busy = None
        if info.is_main:
            try:
                stack.enter_context(FolderLock(run_dir, "training run folder"))
            except FolderBusy as e:
                busy = e
        if not distributed.all_ok(busy is None):
            raise busy or FolderBusy(f"training run folder {run_dir} is in use by another job (rank 0 could not lock it)")
        return _train(cfg, info, run_dir, data)


def _train(cfg: TrainConfig, info: distributed.DistInfo, run_dir: Path, data: LatentCache) -> Path:
    dev = info.device
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    identity = cfg.identity(data.identity)
    run_fingerprint = fingerprint(identity)
    inputs = run_inputs(cfg, data)
    micro, accum = split_batch(cfg, info.world_size)
    C, H, W = data.latent_shape
    arch = dict(
        input_size=H,
        in_channels=C,
        num_classes=data.num_classes,
        learn_sigma=cfg.learn_sigma,
        class_dropout_prob=cfg.class_dropout,
    )
    if cfg.width_match is not None:  # kept in the checkpoint's arch: sampling rebuilds the same width
        arch["hidden_size"] = matched_width(cfg.model, cfg.width_match, **arch)
        log.info("width-matched control: hidden size %d matches %s's parameter count", arch["hidden_size"], cfg.width_match)

    torch.manual_seed(cfg.seed)  # identical initial weights on every process
    model = build_model(cfg.model, cfg.routing, **arch, routing_backend=cfg.routing_backend).to(dev)
    ema = copy.deepcopy(model).requires_grad_(False).float()
    repa = REPATrainer(cfg, model, data, dev) if cfg.repa else None
    trained = model if repa is None else repa  # the module DDP wraps: SiT, or SiT + REPA projector
    params = [p for p in trained.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg.lr, cfg.weight_decay, cfg.adam_betas)
    ema_params, model_params = list(ema.parameters()), list(model.parameters())
    order = DataOrder(len(data), cfg.global_batch, cfg.seed)

    replaced = set_aside(run_dir) if (cfg.restart and info.is_main) else None
    if info.is_main:  # temporary files of a save that was killed: this job holds the folder, so none is in flight
        for tmp in (run_dir / "checkpoints").glob(".*.tmp") if (run_dir / "checkpoints").is_dir() else []:
            tmp.unlink(missing_ok=True)
    distributed.barrier()
    start = 0
    # The newest checkpoint that verifies: rank 0 picks it (setting damaged ones aside), every rank learns that it
    # succeeded before the next collective, and all then read the same file, checking they agree on its step.
    failure = None
    if info.is_main:
        try:
            ckpt_io.newest_intact(run_dir)
        except Exception as e:  # reaches every rank through all_ok instead of leaving them at a barrier
            failure = e
    if not distributed.all_ok(failure is None):
        raise failure or TrainingDiverged(f"rank 0 could not choose a checkpoint in {run_dir}; see its log")
    resume = ckpt_io.newest(run_dir)
    state = ckpt_io.load(resume, map_location=dev, check=info.is_main) if resume is not None else None
    if not distributed.same_on_all(-1 if state is None else int(state["step"])):
        raise ConfigError(f"the processes of this job found different checkpoints in {run_dir}: is it on a shared filesystem?")
    if resume is not None:
        check_resumable(state, resume, identity, inputs, run_dir, finished=int(state["step"]) >= cfg.iterations)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        if repa is not None:
            repa.projector.load_state_dict(state["projector"])
        load_state(opt, state["opt"])
        for group in opt.param_groups:  # the config's values (equal by identity), never a stale state's
            group.update(lr=cfg.lr, weight_decay=cfg.weight_decay, betas=tuple(cfg.adam_betas))
        start = int(state["step"])
        torch.set_rng_state(state["rng"]["torch"].cpu())
        del state  # the model, EMA and optimizer hold their copies
    check_milestones(cfg, run_dir, start, resume, info.is_main)
    record = {"identity": identity, "fingerprint": run_fingerprint, "inputs": inputs}
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(
            run_dir / "config.json",
            {"config": to_dict(cfg), "arch": arch, "world_size": info.world_size, "environment": environment(), **record},
        )
        where = f"resuming from {resume} (step {start})" if resume else "starting from scratch"
        if replaced is not None:
            where += f"; the folder's earlier checkpoints and metrics were set aside in {replaced}"
        log.info("%s routing=%s world=%d micro=%dx%d %s", cfg.model, cfg.routing, info.world_size, micro, accum, where)
    if start >= cfg.iterations:
        _finish(run_dir, cfg, start, info, record)
        return run_dir

    net = DDP(trained, device_ids=[dev.index] if dev.type == "cuda" else None) if info.world_size > 1 else trained
    if cfg.compile:
        net = torch.compile(net)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if (dev.type == "cuda" and cfg.precision == "bf16") else nullcontext()
    lo, hi = info.rank * cfg.global_batch // info.world_size, (info.rank + 1) * cfg.global_batch // info.world_size
    bar = None
    if info.is_main and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=cfg.iterations, initial=start, desc="train", unit="step")
    milestones = set(cfg.milestones)
    sinks = open_sinks(run_dir, start, cfg.tensorboard) if info.is_main else None
    t_last, steps_since = time.perf_counter(), 0
    t_job = t_last  # the ETA: the mean step time of this job so far, times the steps left
    for step in range(start, cfg.iterations):
        # Randomness of this global step, identical on every process (see module docstring).
        g = step_generator(cfg.seed, step, dev)
        pos = order.positions(step)
        flip = torch.randint(0, 2, (cfg.global_batch,), generator=g, device=dev)
        drop = torch.rand(cfg.global_batch, generator=g, device=dev) < cfg.class_dropout
        t = torch.rand(cfg.global_batch, generator=g, device=dev)
        noise = torch.randn((cfg.global_batch, C, H, W), generator=g, device=dev)
        eps = torch.randn((cfg.global_batch, C, H, W), generator=g, device=dev)
        mine = slice(lo, hi)
        x1 = data.latents(pos[mine], flip[mine].cpu(), eps[mine])
        y = data.labels[pos[mine]].to(dev)
        log_now = (step + 1) % cfg.log_every == 0 or step + 1 == cfg.iterations
        loss_sum = torch.zeros((), device=dev)
        align_sum = torch.zeros((), device=dev)
        if repa is not None:
            targets = repa.encode(data.images(pos[mine], flip[mine]).to(dev))  # frozen encoder, no grad
        rec = AlphaRecorder()
        for a in range(accum):
            s = slice(a * micro, (a + 1) * micro)
            xt, ut = interpolate(noise[mine][s], x1[s], t[mine][s])
            sync = nullcontext() if (a == accum - 1 or not isinstance(net, DDP)) else net.no_sync()
            observe = model.routing.observe(rec) if (log_now and a == 0) else nullcontext()
            with sync, autocast, observe:
                if repa is None:
                    v = net(xt, t[mine][s], y[s], drop_labels=drop[mine][s])
                    per_sample = (v.float() - ut.float()).pow(2).mean(dim=(1, 2, 3))
                else:
                    v, projected = net(xt, t[mine][s], y[s], drop_labels=drop[mine][s])
                    align = alignment_loss(projected, targets[s])  # [b], -cos averaged over tokens
                    per_sample = (v.float() - ut.float()).pow(2).mean(dim=(1, 2, 3)) + cfg.repa_lambda * align
                    align_sum += align.detach().sum()
                (per_sample.sum() * info.world_size / cfg.global_batch).backward()
            loss_sum += per_sample.detach().sum()
        loss = distributed.all_reduce_mean(loss_sum / (hi - lo))
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip else float("inf"))
        if not torch.isfinite(torch.stack([loss.float(), grad_norm.float()])).all():  # one host sync for both
            raise _diverged(run_dir, f"loss is {loss.item()} and gradient norm {grad_norm.item()} at step {step + 1}")
        opt.step()
        opt.zero_grad(set_to_none=True)
        ema_update(ema_params, model_params, cfg.ema_decay)  # EMA in fp32: ema = d * ema + (1 - d) * model
        done = step + 1
        steps_since += 1
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        if log_now and info.is_main:
            now = time.perf_counter()
            sec = (now - t_last) / steps_since
            line = {
                "step": done,
                "loss": loss.item(),
                "grad_norm": grad_norm.item(),
                "lr": opt.param_groups[0]["lr"],
                "sec_per_step": sec,
                "images_per_s": cfg.global_batch / sec,
                "mem_gb": _memory_gb(dev),
                **routing_stats(rec),
            }
            if repa is not None:
                line["align_loss"] = distributed.all_reduce_mean(align_sum / (hi - lo)).item()
            sinks.write(line)
            if bar is None:  # a log file (SLURM, Snakemake): one heartbeat per log_every steps
                eta = logs.eta_seconds(done, cfg.iterations, (now - t_job) / (done - start))
                log.info(logs.heartbeat(done, cfg.iterations, line, eta))
            t_last, steps_since = now, 0
        if done in milestones or done % cfg.ckpt_every == 0 or done == cfg.iterations:
            _check_finite(run_dir, done, model=model.state_dict(), ema=ema.state_dict(), opt=opt.state_dict())
            if info.is_main:
                state = {
                    "step": done,
                    "model": model.state_dict(),
                    "ema": ema.state_dict(),
                    "opt": opt.state_dict(),
                    "config": to_dict(cfg),
                    **record,
                    "arch": arch,
                    "latent": {
                        "encoder": data.index["encoder"],
                        "dataset": data.index["dataset"],
                        "shape": list(data.latent_shape),
                    },
                    "rng": {"torch": torch.get_rng_state()},
                    **({"projector": repa.projector.state_dict()} if repa is not None else {}),
                    "data_position": order.position_of(done),
                }
                path = ckpt_io.milestone_path(run_dir, done) if done in milestones else run_dir / "checkpoints" / ckpt_io.LATEST
                ckpt_io.save(path, state)
            distributed.barrier()
    if bar is not None:
        bar.close()
    if sinks is not None:
        sinks.close()
    _finish(run_dir, cfg, cfg.iterations, info, record)
    return run_dir


class REPATrainer(torch.nn.Module):
    """SiT plus REPA's projector as one trainable module (so DDP all-reduces both), and the frozen encoder.

    forward returns (velocity, projected hidden state after block `repa_depth`); the hidden state is
    captured by an observer, so the SiT forward itself is unchanged.
    """

    def __init__(self, cfg: TrainConfig, model: torch.nn.Module, data: LatentCache, dev: torch.device) -> None:
        super().__init__()
        # one image, to count the encoder's tokens; a cache without images raises the error naming the fix
        sample = data.images(torch.zeros(1, dtype=torch.long), torch.zeros(1))
        self.model = model
        self.capture = HiddenCapture(cfg.repa_depth, model.depth, cfg.repa_state)
        grid = model.x_embedder.grid_size
        self.encoder = [build_encoder(cfg.repa_encoder, cfg.repa_encoder_weights, grid).to(dev)]  # a list: not a submodule
        enc_tokens = self.encode(sample.to(dev)).shape[1]
        if enc_tokens != model.x_embedder.num_patches:
            raise ConfigError(
                f"REPA: the {cfg.repa_encoder} encoder gives {enc_tokens} tokens per image but {cfg.model} has "
                f"{model.x_embedder.num_patches}; they must match token for token "
                "(DINOv2-B/14 at 224 px gives 256 = SiT-*/2 at 256 px)"
            )
        self.projector = build_projector(model.hidden_size, self.encoder[0].dim, cfg.repa_projector_dim).to(dev)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder[0](images)

    def forward(self, x, t, y, drop_labels=None):
        with self.model.routing.observe(self.capture):
            v = self.model(x, t, y, drop_labels=drop_labels)
        hidden, self.capture.hidden = self.capture.hidden, None
        return v, self.projector(hidden)


def _finish(run_dir: Path, cfg: TrainConfig, step: int, info, record: dict) -> None:
    if not info.is_main:
        return
    try:
        from dar.train.plots import plot_loss

        plot_loss(run_dir / METRICS_FILE, run_dir / "loss.png", title=f"{cfg.model} {cfg.routing}")
    except Exception as e:  # a plot must never fail a finished run
        log.warning("loss plot skipped: %s", e)
    write_json(
        run_dir / "done.json",
        {"step": step, "milestones": sorted(cfg.milestones), "iterations": cfg.iterations, **record},
    )
    log.info("done: %d steps in %s", step, run_dir)
