"""`python -m dar diagnose`: one diagnostic of cross-layer information flow -> JSON + PNG.

    python -m dar diagnose --figure fig2 --baseline sit.pt --dar static-c4.pt --data results/digits/latents \\
        --num-samples 256 --t-grid 11 --out results/digits/diagnostics/fig2.json
    python -m dar diagnose --figure fig3 --baseline sit.pt --dar static-c4.pt --data ... --out .../fig3.json
    python -m dar diagnose --figure fig5 --probe dynamic-c4.pt --data ... --out .../fig5.json
    python -m dar diagnose --figure chunk_theory --model SiT-XL/2 --cells a.json,b.json --out .../chunk_theory.json
    python -m dar diagnose --figure zoo_flow --checkpoints sit.pt,attnres.pt,... --labels SiT,AttnRes,... --data ...

The PNG is written beside the JSON (<out> with suffix .png). JSON layout, the
same for every figure (the report reads it):

    figure     fig2 | fig3 | fig5 | chunk_theory | zoo_flow
    title      one line
    paper      the paper's reported numbers / findings for this figure
    ours       our measurements (fig2, fig3: keyed by role "baseline" / "dar";
               fig5: the probe's R^2 per block; chunk_theory: curves, S*, band, Table 4 points)
    runs       per role: checkpoint, run, iteration, model, routing, label, ema
    protocol   pairs, t grid, time convention, seeds, definitions of every statistic
    summary    short lines comparing ours with the paper's finding
    config     the resolved DiagnoseConfig
    environment

`ours` per figure (K blocks, T grid times, S sources):

    fig2          <role>: label, at_t {t, loss, rms[K], grad_rms[K], cos[K-1]} (at --t-reference),
                  over_t {t[T], loss[T], rms[T][K], grad_rms[T][K], cos[T][K-1]}
    fig3          <role>: label, kind (gate_gradient | alpha), t[T],
                  layers {"<l>" | "final": {sources[S], values[S][T]}} for every sublayer;
                  protocol.layers = the sublayers the PNG shows
    fig5          label, blocks[K], attn[K], mlp[K], attn_query_input[K], mlp_query_input[K], xt, xt_pooled
                  (test R^2), train_r2 {...}, num_train_pairs, num_test_pairs, features
    chunk_theory  num_sublayers, alpha_band, s_star_band, s_star {alpha}, numeric_check, valid_chunk_sizes,
                  best_valid_chunk, curve {S, cost {alpha}}, paper_depth {L = 56 bands}, measured [{chunk, fid, ...}]
    zoo_flow      methods [{label, routing, run, rms[K], grad_rms[K], cos[K-1], loss}]: Fig. 2's statistics at
                  --t-reference for every checkpoint of --checkpoints (the routing zoo's runs, the baseline first)

Time convention (SiT, dar.transport.path): t = 0 noise, t = 1 data. The
paper's Fig. 2 is "measured at t = 1.0"; the SiT code the paper builds on uses
this convention, so its t = 1.0 is read as the data end (x_t = x1). The whole
t grid is reported as well, so the other reading is in the JSON too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dar.config import AT_LEAST_1, NON_NEGATIVE, ConfigError, Range, check_values, job_parser, opt, run_job, to_dict
from dar.distributed import pick_device
from dar.io import write_json

FIGURES = ("fig2", "fig3", "fig5", "chunk_theory", "zoo_flow")
T_CONVENTION = (
    "SiT: x_t = t x1 + (1 - t) x0, t = 0 noise, t = 1 data. The paper's Fig. 2 is 'measured at t = 1.0'; the SiT code "
    "it builds on uses this convention, so t = 1.0 is read as the data end (x_t = x1, the clean latent). Every statistic "
    "is also reported over the whole t grid."
)


@dataclass
class DiagnoseConfig:
    figure: str = opt("", "which diagnostic: fig2 | fig3 | fig5 | chunk_theory | zoo_flow", choices=FIGURES)
    baseline: str = opt("", "fig2/fig3: checkpoint of the residual baseline (the paper: SiT-XL/2 at 600K)")
    dar: str = opt("", "fig2/fig3: checkpoint of the DAR run (the paper: DAR static c4 at 600K)")
    probe: str = opt("", "fig5: checkpoint whose aggregator inputs are probed (the paper: DAR-Dynamic)")
    checkpoints: list[str] = opt([], "zoo_flow: a checkpoint of every method compared, the residual baseline first")
    labels: list[str] = opt([], "zoo_flow: a label per checkpoint (default: each routing's label)")
    data: str = opt("", "latent cache folder the (image, noise) pairs are drawn from (fig2, fig3, fig5)")
    out: str = opt("diagnostics.json", "result JSON; the figure is written beside it with suffix .png")
    num_samples: int = opt(256, "(image, noise) pairs (the paper: 4096)", range=AT_LEAST_1)
    t_grid: int = opt(11, "uniform t values on [0, 1], both ends included (t = 0 noise, t = 1 data)", range=Range(2))
    t_reference: float = opt(
        1.0, "fig2: the t of the paper's Fig. 2 line plots (1.0 = SiT's data end); must be on the grid", range=Range(0, 1)
    )
    batch_size: int = opt(64, "pairs per forward (and backward) pass", range=AT_LEAST_1)
    seed: int = opt(0, "seed of the pairs (images, flips, noise) and of the probe's train/test split", range=NON_NEGATIVE)
    ema: bool = opt(True, "use the checkpoints' EMA weights")
    device: str = opt("auto", "auto | cpu | cuda | cuda:<index>", device=True)
    layers: list[int] = opt(
        [], "fig3: sublayers to plot (default: L/4+1 and L-1); the JSON holds every sublayer", range=AT_LEAST_1
    )
    probe_alpha: float = opt(1.0, "fig5: ridge penalty on standardised features (sklearn's Ridge alpha)", range=NON_NEGATIVE)
    test_fraction: float = opt(0.25, "fig5: fraction of the pairs held out for the test R^2", range=Range(0, 1, True, True))
    model: str = opt("", "chunk_theory: registered model whose 2 x depth sublayers are L, e.g. SiT-XL/2")
    num_sublayers: int = opt(0, "chunk_theory: L directly (0: from --model)", range=NON_NEGATIVE)
    alpha_band: list[float] = opt([0.4, 0.7], "chunk_theory: alpha range of the S* band (the paper: 0.4,0.7)")
    cells: list[str] = opt([], "chunk_theory: Table 4 cell JSONs (metrics.fid.mean); missing files are skipped")

    def validate(self) -> None:
        check_values(self)
        if self.figure not in FIGURES:
            raise ConfigError(f"figure: choose one of {FIGURES} (--figure), got {self.figure!r}")
        if self.figure == "chunk_theory":
            if self.num_sublayers < 0 or (not self.num_sublayers and not self.model):
                raise ConfigError("chunk_theory needs L: give --model (e.g. SiT-XL/2) or --num-sublayers")
            if len(self.alpha_band) != 2 or not 0 < self.alpha_band[0] < self.alpha_band[1] < 1:
                raise ConfigError(f"alpha_band: two values 0 < lo < hi < 1, got {self.alpha_band}")
            return
        if self.figure == "zoo_flow":
            if not self.checkpoints:
                raise ConfigError("zoo_flow needs --checkpoints: one per method, the residual baseline first")
            if self.labels and len(self.labels) != len(self.checkpoints):
                raise ConfigError(f"labels: {len(self.labels)} given for {len(self.checkpoints)} checkpoints; one each")
            paths = [("checkpoints", p) for p in self.checkpoints]
        else:
            needed = {"fig2": ("baseline", "dar"), "fig3": ("baseline", "dar"), "fig5": ("probe",)}[self.figure]
            given = [k for k in needed if getattr(self, k)]
            if not given:
                raise ConfigError(f"{self.figure} needs a checkpoint: --{' and/or --'.join(needed)}")
            paths = [(k, getattr(self, k)) for k in given]
        for key, path in paths:
            if not Path(path).is_file():
                raise ConfigError(f"{key}: checkpoint {path} does not exist; train that run first (python -m dar train)")
        if not self.data:
            raise ConfigError("data: give the latent cache folder the pairs come from (--data)")
        if self.num_samples < (2 if self.figure == "fig5" else 1) or self.batch_size < 1:
            raise ConfigError("num_samples must be >= 1 (fig5: >= 2, for a train/test split) and batch_size >= 1")
        if self.t_grid < 2:
            raise ConfigError(f"t_grid: at least 2 points (both ends of [0, 1]), got {self.t_grid}")
        from dar.diagnostics.pairs import t_grid

        if self.figure in ("fig2", "zoo_flow") and min(abs(t - self.t_reference) for t in t_grid(self.t_grid)) > 1e-9:
            raise ConfigError(f"t_reference {self.t_reference} is not on the {self.t_grid}-point grid {t_grid(self.t_grid)}")
        if not 0 < self.test_fraction < 1:
            raise ConfigError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")


# ---------------------------------------------------------------------------
# Shared: models, run records
# ---------------------------------------------------------------------------


def load_model(path: str, ema: bool, device: torch.device):
    """(model in eval mode on device, run record)."""
    from dar.routing import parse_routing
    from dar.train.checkpoint import load_for_inference

    model, ckpt = load_for_inference(path, ema=ema)
    cfg = ckpt["config"]
    out = Path(cfg.get("out", ""))
    run = out.parts[-2] if len(out.parts) >= 3 and out.parts[-3] == "runs" else None  # <root>/runs/<run>/seed<k>
    record = {
        "checkpoint": str(path),
        "run": run,
        "iteration": int(ckpt["step"]),
        "model": cfg["model"],
        "routing": cfg["routing"],
        "label": parse_routing(cfg["routing"]).label,
        "ema": ema,
    }
    return model.to(device).eval(), record


def load_grid_pairs(cfg: DiagnoseConfig) -> tuple[list[float], list]:
    """(the t grid, the (image, noise) pairs) every figure but chunk_theory measures on."""
    from dar.diagnostics.pairs import load_pairs, t_grid

    return t_grid(cfg.t_grid), load_pairs(cfg.data, cfg.num_samples, cfg.seed)


def role_models(cfg: DiagnoseConfig, device: torch.device):
    """(role, model, run record) for each of --baseline, --dar that is given, loaded one at a time."""
    for role in ("baseline", "dar"):
        path = getattr(cfg, role)
        if path:
            model, rec = load_model(path, cfg.ema, device)
            yield role, model, rec


def pairs_protocol(cfg: DiagnoseConfig, ts: list[float], device: torch.device) -> dict:
    return {
        "data": cfg.data,
        "num_samples": cfg.num_samples,
        "pairs": "num_samples distinct cache images (random flip, fresh posterior sample) with N(0, I) noise, from seed "
        f"{cfg.seed}; the same pairs at every t and for every checkpoint",
        "labels": "each image's class label (no class dropout)",
        "t_grid": ts,
        "t_convention": T_CONVENTION,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "device": str(device),
        "precision": "fp32",
    }


# ---------------------------------------------------------------------------
# The four diagnostics
# ---------------------------------------------------------------------------


def run_fig2(cfg: DiagnoseConfig, device: torch.device) -> dict:
    from dar.diagnostics import flow

    ts, pairs = load_grid_pairs(cfg)
    ours, runs, summary = {}, {}, []
    for role, model, rec in role_models(cfg, device):
        stats = flow.flow_stats(model, pairs, ts, cfg.batch_size, device)
        ref = flow.at_t(stats, cfg.t_reference)
        ours[role] = {"label": rec["label"], "at_t": ref, "over_t": stats}
        runs[role] = rec
        summary += flow.summarize(rec["label"], ref)
        infl = [r[-1] / r[0] for r in stats["rms"]]
        summary.append(
            f"{rec['label']}: RMS inflation (last / first block) over the t grid from x{min(infl):.3g} "
            f"(t={ts[infl.index(min(infl))]:g}) to x{max(infl):.3g} (t={ts[infl.index(max(infl))]:g})"
        )
    if len(ours) == 2:
        b, d = ours["baseline"]["at_t"], ours["dar"]["at_t"]
        K = len(b["rms"])
        half = (K - 1) // 2
        summary.append(
            f"at t={b['t']:g}: last-block RMS {b['rms'][-1]:.3g} ({ours['baseline']['label']}) vs {d['rms'][-1]:.3g} "
            f"({ours['dar']['label']}); deep-half mean cos {sum(b['cos'][half:]) / len(b['cos'][half:]):.3f} vs "
            f"{sum(d['cos'][half:]) / len(d['cos'][half:]):.3f}"
        )
    protocol = {
        **pairs_protocol(cfg, ts, device),
        "t_reference": ours[next(iter(ours))]["at_t"]["t"],
        "z_k": "block k's output state: the stream's read of sublayer 2k+1 (residual: the residual stream after block k; "
        "DAR: the aggregated state passed to block k+1); for the last block the state fed to the head",
        "rms": "per-token sqrt(mean over features of z^2), averaged over pairs and tokens",
        "grad_rms": "the same RMS of dL/dz_k",
        "loss": "L = velocity MSE, mean over the num_samples pairs and every latent dimension (the SiT training loss of "
        "one batch of num_samples), at each t; dL/dz scales as 1 / num_samples",
        "cos": "per-token cosine similarity of z_k and z_{k+1}, averaged over pairs and tokens (k = 1..K-1)",
    }
    title = "Fig. 2: forward RMS, gradient RMS and adjacent-block cosine across depth"
    return {
        "figure": "fig2",
        "title": title,
        "paper": flow.PAPER,
        "ours": ours,
        "runs": runs,
        "protocol": protocol,
        "summary": summary,
    }


def run_zoo_flow(cfg: DiagnoseConfig, device: torch.device) -> dict:
    """Fig. 2's statistics at t_reference for every method of the routing zoo, loaded one at a time."""
    from dar.diagnostics import flow

    ts, pairs = load_grid_pairs(cfg)
    t = min(ts, key=lambda x: abs(x - cfg.t_reference))
    methods, runs, summary = [], [], []
    for i, path in enumerate(cfg.checkpoints):
        model, rec = load_model(path, cfg.ema, device)
        if cfg.labels:
            rec["label"] = cfg.labels[i]
        s = flow.at_t(flow.flow_stats(model, pairs, [t], cfg.batch_size, device), t)
        methods.append({"label": rec["label"], "routing": rec["routing"], "run": rec["run"], **s})
        runs.append(rec)
        K = len(s["rms"])
        m = flow.early_blocks(K)
        half = (K - 1) // 2
        early, deep = sum(s["grad_rms"][:m]) / m, sum(s["grad_rms"][m:]) / (K - m)
        summary.append(
            f"{rec['label']}: RMS(z_k) x{s['rms'][-1] / s['rms'][0]:.3g} from block 1 to {K}; gradient RMS early/deep "
            f"x{early / deep:.3g}; deep-half mean cos {sum(s['cos'][half:]) / len(s['cos'][half:]):.3f}; loss {s['loss']:.4f}"
        )
        del model
    return {
        "figure": "zoo_flow",
        "title": f"Routing zoo: forward RMS, gradient RMS and adjacent-block cosine over depth (Fig. 2's statistics, t = {t:g})",
        "paper": flow.PAPER,
        "ours": {"methods": methods},
        "runs": runs,
        "protocol": {
            **pairs_protocol(cfg, ts, device),
            "t_reference": t,
            "z_k": "block k's output state: the stream's read of sublayer 2k+1, the head's input for the last block "
            "(Hyper-Connections / mHC: the mix of the n copies that block k+1 reads)",
            "statistics": "as Fig. 2 (dar/diagnostics/flow.py), at t_reference only",
        },
        "summary": summary,
    }


def run_fig3(cfg: DiagnoseConfig, device: torch.device) -> dict:
    from dar.diagnostics import importance

    ts, pairs = load_grid_pairs(cfg)
    ours, runs, summary = {}, {}, []
    layers: list[int] = []
    for role, model, rec in role_models(cfg, device):
        L = model.routing.num_sublayers
        layers = sorted(cfg.layers) if cfg.layers else importance.default_layers(L)
        bad = [l for l in layers if not 1 <= l <= L]
        if bad:
            raise ConfigError(f"layers: sublayers {bad} outside 1..{L} of {rec['model']}")
        if role == "baseline":
            res, kind = importance.gate_gradients(model, pairs, ts, cfg.batch_size, device), "gate_gradient"
        else:
            res, kind = importance.routing_weights(model, pairs, ts, cfg.batch_size, device), "alpha"
        ours[role] = {"label": rec["label"], "kind": kind, **res}
        runs[role] = rec
        summary += importance.summarize(rec["label"], kind, res, layers)
    protocol = {
        **pairs_protocol(cfg, ts, device),
        "layers": layers,
        "layers_rule": "given with --layers, else L/4 + 1 and L - 1 (a shallow and a deep attention sublayer)",
        "values": "ours.<role>.layers.<l>.values is a [source][t] matrix; sources are the indices i of v_i "
        "(v_0 = input embedding, v_l = output of sublayer l); 'final' is the head's input",
        "gate_gradient": "residual baseline: dL/dg_{i->l} for measurement-only gates g = 1 on h~_l = h_l + sum_i (g_i - 1) v_i "
        "(forward unchanged bit for bit); L = velocity MSE over all pairs at that t; negative = up-weighting helps",
        "alpha": "DAR: the softmax routing weights alpha_{i->l}(t) (Eq. 5), averaged over pairs and tokens",
        "plot": "baseline maps show -dL/dg with each t column divided by its max |.|; DAR maps show alpha",
    }
    title = "Fig. 3: source mixing across t (baseline: gate-gradient importance; DAR: routing weights)"
    return {
        "figure": "fig3",
        "title": title,
        "paper": importance.PAPER,
        "ours": ours,
        "runs": runs,
        "protocol": protocol,
        "summary": summary,
    }


def run_fig5(cfg: DiagnoseConfig, device: torch.device) -> dict:
    from dar.diagnostics import probe

    ts, pairs = load_grid_pairs(cfg)
    model, rec = load_model(cfg.probe, cfg.ema, device)
    res = probe.timestep_probe(model, pairs, ts, cfg.batch_size, device, cfg.test_fraction, cfg.probe_alpha, cfg.seed)
    protocol = {
        **pairs_protocol(cfg, ts, device),
        "features": "token-mean of the aggregated state h_l feeding sublayer l (attention aggregator of block k: l = 2k-1, "
        "MLP: l = 2k); query_input: token-mean of v_{l-1} (v_0 for l = 1); x_t: the flattened input latent; "
        "x_t pooled: mean over patches of the patchified latent",
        "probe": f"ridge regression of t (sklearn Ridge, alpha = {cfg.probe_alpha}) on features standardised with the train "
        "statistics, fitted in closed form from accumulated moments",
        "split": f"pair level: {res['num_test_pairs']} of {len(pairs)} pairs held out with every t (test_fraction "
        f"{cfg.test_fraction}, seed {cfg.seed})",
        "metric": "test R^2 (sklearn r2_score) over the held-out pairs x the t grid",
    }
    title = f"Fig. 5: linear probe of t from the router inputs ({rec['label']}, it {rec['iteration']})"
    return {
        "figure": "fig5",
        "title": title,
        "paper": probe.PAPER,
        "ours": {"label": rec["label"], **res},
        "runs": {"probe": rec},
        "protocol": protocol,
        "summary": probe.summarize(rec["label"], res),
    }


def run_chunk_theory(cfg: DiagnoseConfig) -> dict:
    from dar.diagnostics import chunk_theory
    from dar.models import MODELS, SIZES

    if cfg.num_sublayers:
        L, source = cfg.num_sublayers, "--num-sublayers"
    else:
        if cfg.model not in MODELS:
            raise ConfigError(f"model: unknown model {cfg.model!r}; registered: {', '.join(MODELS)}")
        L, source = 2 * SIZES[MODELS[cfg.model][0]].depth, f"2 x depth of {cfg.model}"
    found = [p for p in cfg.cells if Path(p).is_file()]
    cells = [json.loads(Path(p).read_text()) for p in found]
    res = chunk_theory.theory(L, tuple(cfg.alpha_band), cells)
    protocol = {
        "num_sublayers": L,
        "num_sublayers_from": source,
        "cost": "Eq. 8: C(S) = log(L/S + S) + alpha log S (natural log); S* = sqrt(L (1 - alpha) / (1 + alpha)) (Eq. 9)",
        "numeric_check": "bounded scalar minimisation of Eq. 8 over S in (0, L] (scipy)",
        "cells_found": found,
        "cells_missing": [p for p in cfg.cells if p not in found],
    }
    return {
        "figure": "chunk_theory",
        "title": f"Chunk-size theory (Eq. 8-9): cost of chunked aggregation, L = {L}",
        "paper": chunk_theory.PAPER,
        "ours": res,
        "runs": {"table4": [{k: c.get(k) for k in ("name", "run", "routing", "iteration")} for c in cells]},
        "protocol": protocol,
        "summary": chunk_theory.summarize(res),
    }


def run(cfg: DiagnoseConfig) -> dict:
    cfg.validate()
    from dar.diagnostics.plots import PLOTS
    from dar.provenance import environment

    if cfg.figure == "chunk_theory":
        result = run_chunk_theory(cfg)
    else:
        device = pick_device(cfg.device)
        result = {"fig2": run_fig2, "fig3": run_fig3, "fig5": run_fig5, "zoo_flow": run_zoo_flow}[cfg.figure](cfg, device)
    result["config"] = to_dict(cfg)
    result["environment"] = environment()
    out = Path(cfg.out)
    write_json(out, result)
    PLOTS[cfg.figure](result, out.with_suffix(".png"))
    return result


def print_result(cfg: DiagnoseConfig, result: dict) -> None:
    for line in result["summary"]:
        print(f"[diagnose] {line}")
    print(f"[diagnose] wrote {cfg.out} and {Path(cfg.out).with_suffix('.png')}")


def main(argv: list[str] | None = None) -> int:
    args = job_parser("python -m dar diagnose", __doc__, DiagnoseConfig).parse_args(argv)
    return run_job(DiagnoseConfig, args, run, print_result)
