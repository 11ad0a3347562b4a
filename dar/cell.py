"""`python -m dar cell --config jobs/cell/<table>/<name>.json`: evaluate one table cell over its seeds.

The workflow writes the cell's config (dar/plan.py): its sample files, the identity
each must have been made under, the run's model and routing and the iteration it
expects, the reference and feature space. For every seed the job

  1. reads the sample file's sidecar and refuses when what made it differs from what
     the grid asks for (another checkpoint, routing, model, iteration, sampler, NFE,
     guidance or sample count): the refusal names each differing field;
  2. evaluates it (FID, sFID, IS, precision, recall; `dar.metrics.evaluate`), writing the
     per-seed JSON under results/<preset>/evals/;

then writes the cell JSON: each metric's per-seed values, mean, std and n, the paper's
value where the paper gives one, the signed delta (only at the paper's scale), the
cell's identity and fingerprint, and the protocol of every seed as its artefacts
recorded it (the sidecar: checkpoint, routing, model, iteration, sampler, NFE, cfg;
the evaluation: reference and extractor hashes) - never re-derived from the grid.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

from dar.config import ConfigError, job_parser, opt, run_job
from dar.fingerprint import IdentityMismatch, differences, fingerprint
from dar.grid import snakemake_command
from dar.io import write_json
from dar.paper import comparable_scale, paper_source, paper_value
from dar.provenance import git_commit

# our metric key -> the paper's
METRIC_KEYS = {"fid": "fid", "sfid": "sfid", "is_mean": "is", "precision": "precision", "recall": "recall"}


@dataclass
class CellConfig:
    table: str = opt("", "table1..table4, fig1b or zoo")
    name: str = opt("", "cell name (python -m dar cells lists them)")
    out: str = opt("", "cell result JSON")
    preset: str = opt("", "preset name (recorded)")
    scale: str = opt("digits", "digits | imagenet256: whether the numbers are comparable with the paper's")
    run: str = opt("", "the grid's run name (the paper's row key)")
    label: str = opt("", "the run's label in tables")
    cfg: bool = opt(False, "the cell is a 'w/ guidance' cell")
    paper_iteration: int = opt(0, "the paper's iteration for this cell (ours x paper_iteration_scale)")
    expect: dict = opt({}, "what the samples' checkpoint must be: model, routing, iteration")
    seeds: list[int] = opt([], "training seeds, one sample file each")
    samples: list[str] = opt([], "sample .npz per seed")
    sample_identities: list[dict] = opt(
        [], "the identity each sample file must record (dar.sampling.config.SampleConfig.identity)"
    )
    evals: list[str] = opt([], "per-seed evaluation JSON to write")
    features: str = opt("digits", "feature space: digits | inception")
    reference: str = opt("", "reference statistics or ADM batch file")
    reference_name: str = opt("", "the reference's name in the grid (digits-train, VIRTUAL_imagenet256_labeled.npz)")
    weights: str | None = opt(None, "feature extractor weights (digits)")
    assets_dir: str | None = opt(None, "assets folder (inception)")
    num_samples: int = opt(0, "samples evaluated per seed")
    feature_cache: str | None = opt(None, "folder keeping an ADM reference batch's precision/recall features")
    adm_cross_check: bool = opt(True, "also compute FID/sFID with the ADM evaluator's sqrtm (recorded under checks)")
    device: str | None = opt(None, "feature-extraction device (default: cuda if available)")
    workflow_preset: str = opt("digits", "the preset as the workflow was given it (for the commands in messages)")
    workflow_results: str = opt("results", "the workflow's results root (for the commands in messages)")

    def snakemake(self, target: str | Path, *flags: str) -> str:
        return snakemake_command(target, self.workflow_preset, self.workflow_results, *flags)

    def validate(self) -> None:
        n = len(self.seeds)
        if not self.table or not self.name or not self.out:
            raise ConfigError("table, name and out are required (the workflow writes them: jobs/cell/<table>/<name>.json)")
        if not n or not (len(self.samples) == len(self.sample_identities) == len(self.evals) == n):
            raise ConfigError(f"seeds, samples, sample_identities and evals must have one entry per seed ({n} seeds)")


def cell_identity(cfg: CellConfig) -> dict:
    """What a cell's numbers are: its sample sets (by fingerprint) and the evaluation's reference and feature space."""
    return {
        "samples": [fingerprint(i) for i in cfg.sample_identities],
        "features": cfg.features,
        "reference": cfg.reference_name,
        "num_samples": cfg.num_samples,
    }


def summarize(values: list[float]) -> dict:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
        "values": values,
    }


def read_sidecar(cfg: CellConfig, path: str | Path) -> dict:
    side = Path(str(path) + ".json")
    if not Path(path).is_file() or not side.is_file():
        remake = cfg.snakemake(cfg.out, "--forcerun", "sample")
        raise ConfigError(f"sample file {path} or its sidecar {side.name} is missing; make it with: {remake}")
    try:
        return json.loads(side.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"sidecar {side} is not valid JSON ({e}); rerun its sampling job: {cfg.snakemake(cfg.out, '--forcerun', 'sample')}"
        ) from None


def check_samples(cfg: CellConfig, path: str, sidecar: dict, expected_identity: dict) -> None:
    """Refuse a sample file whose recorded protocol is not the one this cell's grid entry asks for."""
    ways_out = [f"remake it: {cfg.snakemake(cfg.out, '--forcerun', 'sample')}", "fix the grid entry if the grid is what is wrong"]
    recorded = {k: sidecar.get(k) for k in cfg.expect}
    if differences(recorded, cfg.expect):
        raise IdentityMismatch(f"cell {cfg.table}/{cfg.name}: sample file", path, recorded, cfg.expect, ways_out)
    if differences(sidecar.get("identity"), expected_identity) or sidecar.get("fingerprint") != fingerprint(expected_identity):
        recorded = {"identity": sidecar.get("identity"), "fingerprint": sidecar.get("fingerprint")}
        current = {"identity": expected_identity, "fingerprint": fingerprint(expected_identity)}
        raise IdentityMismatch(f"cell {cfg.table}/{cfg.name}: sample file", path, recorded, current, ways_out)
    check_checkpoint_bytes(cfg, path, sidecar)


def check_checkpoint_bytes(cfg: CellConfig, path: str, sidecar: dict) -> None:
    """The checkpoint the samples came from must still be the bytes they were drawn from: a run restarted or retrained
    under the same identity (python -m dar train --restart) rewrites its checkpoints, and old samples would be scored
    as the new weights'."""
    from dar.train import checkpoint as ckpt_io

    ckpt = Path(sidecar.get("checkpoint", ""))
    drawn = (sidecar.get("inputs") or {}).get("checkpoint_sha256")
    if not drawn:
        return  # samples of a file this harness did not write (an official checkpoint): their identity was checked above
    if not ckpt.is_file():
        raise ConfigError(
            f"cell {cfg.table}/{cfg.name}: sample file {path} was drawn from {ckpt}, which is gone (set aside by --restart, "
            f"or moved); its samples cannot be vouched for: {cfg.snakemake(cfg.out, '--forcerun', 'sample')}"
        )
    rec = ckpt_io.recorded(ckpt)
    now = rec["sha256"] if rec and rec.get("sha256") and "next" not in rec else ckpt_io.sha256(ckpt)
    if now != drawn:
        raise IdentityMismatch(
            f"cell {cfg.table}/{cfg.name}: sample file", path, {"checkpoint_sha256": drawn}, {"checkpoint_sha256": now},
            [f"resample from the checkpoint as it is now (the run was restarted): {cfg.snakemake(cfg.out, '--forcerun', 'sample')}"],  # noqa: E501
        )  # fmt: skip


def cell_result(cfg: CellConfig, sidecars: list[dict], evals: list[dict]) -> dict:
    metrics = {paper_key: summarize([e["metrics"][ours] for e in evals]) for ours, paper_key in METRIC_KEYS.items()}
    first = sidecars[0]
    paper = paper_value(cfg.table, cfg.run, first["sampler_alias"], cfg.cfg, cfg.paper_iteration)
    stand_ins = sorted(
        {p[k]["provenance"] for p in (e.get("protocol", {}) for e in evals) for k in ("feature_extractor", "reference")
         if p.get(k, {}).get("provenance", "published") != "published"}
    )  # fmt: skip
    comparable = comparable_scale(cfg.scale) and not stand_ins  # numbers from stand-in assets are never compared
    delta = {k: metrics[k]["mean"] - v for k, v in paper.items() if k in metrics} if comparable else {}
    identity = cell_identity(cfg)
    return {
        # what the artefacts recorded (checked equal across seeds and to the grid entry)
        "table": cfg.table,
        "name": cfg.name,
        "run": cfg.run,
        "iteration": first["iteration"],
        "sampler": first["sampler_alias"],
        "cfg": cfg.cfg,
        "cfg_scale": first["cfg_scale"],
        "nfe": first["nfe"],
        "num_samples": cfg.num_samples,
        "label": cfg.label,
        "routing": first["routing"],
        "model": first["model"],
        "seeds": list(cfg.seeds),
        "preset": cfg.preset,
        "scale": cfg.scale,
        "feature_space": evals[0].get("feature_space", cfg.features),
        "metrics": metrics,
        "paper": paper,
        "paper_source": paper_source(cfg.table),
        "paper_iteration": cfg.paper_iteration,
        "delta": delta,
        "delta_note": ""
        if comparable
        else f"no delta: evaluated with {stand_ins[0]} assets"
        if stand_ins
        else f"no delta: {cfg.scale}-scale metrics are not comparable with the paper's ImageNet numbers",
        "identity": identity,
        "fingerprint": fingerprint(identity),
        "protocols": [e.get("protocol", {}) for e in evals],
        "git_commit": git_commit(),
    }


def run(cfg: CellConfig) -> dict:
    from dar.metrics.checks import EvaluationInputError
    from dar.metrics.evaluate import evaluate, evaluation_args

    sidecars = []
    for path, identity in zip(cfg.samples, cfg.sample_identities):
        sidecar = read_sidecar(cfg, path)
        check_samples(cfg, path, sidecar, identity)
        sidecars.append(sidecar)
    evals = []
    for seed, path, out in zip(cfg.seeds, cfg.samples, cfg.evals):
        args = evaluation_args(
            samples=path, reference=cfg.reference, num_samples=cfg.num_samples, out=out, features=cfg.features,
            weights=cfg.weights, assets_dir=cfg.assets_dir, feature_cache=cfg.feature_cache,
            adm_cross_check=cfg.adm_cross_check,
            **({"device": cfg.device} if cfg.device else {}),
        )  # fmt: skip
        try:
            result = evaluate(args)
        except EvaluationInputError as e:
            raise ConfigError(f"evaluating seed {seed} of {cfg.table}/{cfg.name}: {e}") from None
        write_json(out, result)
        evals.append(result)
    result = cell_result(cfg, sidecars, evals)
    write_json(cfg.out, result)
    return result


def print_result(cfg: CellConfig, result: dict) -> None:
    m = result["metrics"]
    print(
        f"[cell] {cfg.out}: FID {m['fid']['mean']:.3f} sFID {m['sfid']['mean']:.3f} IS {m['is']['mean']:.2f} "
        f"P {m['precision']['mean']:.3f} R {m['recall']['mean']:.3f} ({result['feature_space']} features, n={m['fid']['n']})"
    )


def main(argv: list[str] | None = None) -> int:
    args = job_parser("python -m dar cell", __doc__, CellConfig).parse_args(argv)
    return run_job(CellConfig, args, run, print_result)
