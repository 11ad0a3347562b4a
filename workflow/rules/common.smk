# Shared: the experiment grid (dar.grid), the launcher command, resources and input functions.
import shlex

from snakemake.exceptions import WorkflowError

from dar.grid import Grid, GridError

try:
    GRID = Grid.load(config["preset"], results=config.get("results", "results"))
except GridError as e:
    raise WorkflowError(f"bad experiment grid: {e}")

R = str(GRID.root)  # results/<preset>
PRESET = config["preset"]
ENV = "../../environment.yml"  # conda environment of every rule (snakemake --use-conda)
KERNEL_BENCH = f"{R}/bench/kernel.json"


def res(**overrides):
    """Rule resources: where the job runs and its size. slurm/config.yaml overrides them per rule."""
    base = dict(cluster="local", gpus=0, nodes=1, mem_gb=0, time_min=120, partition="", account="")
    base.update(overrides)
    return base


def launch(job, name):
    """Shell prefix running `python -m dar <job>` through submitit with the rule's resources."""
    return (
        f"python -m dar.launch {job} --cluster {{resources.cluster}} --gpus {{resources.gpus}} "
        f"--nodes {{resources.nodes}} --cpus {{threads}} --mem-gb {{resources.mem_gb}} "
        f"--time-min {{resources.time_min}} --partition '{{resources.partition}}' --account '{{resources.account}}' "
        f"--folder {{params.submitit}} --name {GRID.data['name']}-{name} --"
    )


SUBMITIT = f"{R}/submitit"


def q(args):
    return " ".join(shlex.quote(str(a)) for a in args)


def sample_key(w):
    for k in GRID.sample_keys():
        if k.run == w.run and k.seed == int(w.seed) and k.stem == w.stem:
            return k
    raise WorkflowError(f"no sample file {w.run}/seed{w.seed}/{w.stem} in the {PRESET} grid")


def cache_inputs(w):
    return [GRID.assets_dir / ".fetched"] if GRID.data["data"]["encoder"] == "sd-vae" else []


def cache_args():
    d = GRID.data["data"]
    args = ["--dataset", d["dataset"], "--encoder", d["encoder"], "--out", GRID.latents_dir]
    for key in ("root", "image_size", "shard_size", "batch_size"):
        if key in d:
            args += [f"--{key.replace('_', '-')}", d[key]]
    if d["encoder"] == "sd-vae":
        args += ["--vae-path", GRID.assets_dir / "sd-vae-ft-ema"]
    if GRID.needs_images:
        args += ["--store-images", "true"]  # REPA's encoder reads the clean images
    return q(args)


def train_inputs(w):
    """The latent cache, plus REPA's frozen encoder weights for REPA runs."""
    ins = [f"{R}/latents/index.json"]
    if GRID.runs[(w.run, int(w.seed))].repa:
        enc = GRID.data["repa"]["encoder"]
        ins.append(str(GRID.repa_weights) if enc == "digits" else str(GRID.assets_dir / ".fetched"))
    return ins


def cell_inputs(w):
    cell = GRID.cell(w.table, w.name)
    ins = [str(GRID.samples_path(k)) for k in cell.sample_keys()]
    if GRID.features == "digits":
        ins += [str(GRID.reference), str(GRID.digits_net)]  # made by reference_stats / digits_features
    else:
        ins.append(str(GRID.assets_dir / ".fetched"))  # the ADM reference batch and Inception weights
    return ins
