# Shared: the compiled plan (dar.plan), its job config files, the launcher command, resources, input functions.
#
# The grid compiles once into typed specs (dar/plan.py). Every job reads one resolved config file,
# results/<preset>/jobs/<kind>/<name>.json, written here by the plan's one writer: only files whose content
# changed are rewritten, so Snakemake (mtime) reruns exactly the jobs whose config changed. Run folders and
# sample files are named by fingerprint (dar/fingerprint.py): a changed config trains a new run instead of
# resuming an old one, and the old run's folder is kept.
from snakemake.exceptions import WorkflowError

from dar.config import ConfigError
from dar.plan import Plan

try:
    PLAN = Plan.load(config["preset"], results=config.get("results", "results"))
    PLAN.write_job_configs()
except ConfigError as e:
    raise WorkflowError(f"bad experiment grid: {e}")

R = str(PLAN.root)  # results/<preset>
S = str(PLAN.shared_root)  # results/shared: what every preset shares
ENV = "../../environment.yml"  # conda environment of every rule (snakemake --use-conda)
KERNEL_BENCH = str(PLAN.kernel_bench)
LATENTS = str(PLAN.latents_dir / "index.json")


def res(**overrides):
    """Rule resources: where the job runs and its size. slurm/config.yaml overrides them per rule.

    cpus: the CPUs the job itself asks for (SLURM --cpus-per-task; its torch threads), apart from the rule's
    `threads`, the slots its launcher holds where Snakemake runs. Locally the job runs in those slots (both 1);
    on a cluster the launcher is a cheap waiting process (1 slot) whose job gets `cpus` CPUs on a node."""
    base = dict(cluster="local", gpus=0, nodes=1, cpus=1, mem_gb=0, time_min=120, partition="", account="")
    base.update(overrides)
    return base


def launch(job, name, folder=f"{R}/submitit"):
    """Shell prefix running `python -m dar <job>` through submitit with the rule's resources.

    `name` keys the launcher's re-attach record; shared jobs pass a preset-independent name and folder."""
    return (
        f"python -m dar.launch {job} --cluster {{resources.cluster}} --gpus {{resources.gpus}} "
        f"--nodes {{resources.nodes}} --cpus {{resources.cpus}} --mem-gb {{resources.mem_gb}} "
        f"--time-min {{resources.time_min}} --partition '{{resources.partition}}' --account '{{resources.account}}' "
        f"--folder {folder} --name {name} --"
    )


def bench(rule, name, shared=False):
    """The job's Snakemake benchmark record (wall time, max RSS): <root>/benchmarks/<rule>/<name>.tsv, read by
    `python -m dar run-bench` for the stage breakdown of a run. Wildcards in `name` stay Snakemake's."""
    return str((PLAN.shared_benchmarks_dir if shared else PLAN.benchmarks_dir) / rule / f"{name}.tsv")


def assets_inputs(w=None):
    """The fetched-assets marker, for the jobs that read pretrained assets (paper scale)."""
    return [str(PLAN.assets_marker)] if PLAN.needs_assets else []


# Outputs named by fingerprint change their path when what made them changes, so a downstream job needs
# no mtime cascade from them: ancient() keeps a rerun that changed nothing of substance (a training job
# rerun for a new log interval, a latent cache index rewritten) from resampling and re-evaluating the grid.


def train_inputs(w):
    """The run's config, the latent cache, and REPA's frozen encoder weights for REPA runs."""
    run = PLAN.run_by_dir(f"{R}/runs/{w.run}/{w.folder}")
    ins = {"config": str(run.job), "latents": ancient(LATENTS)}
    if run.repa:
        ins["encoder"] = str(PLAN.repa_weights) if PLAN.repa_encoder == "digits" else str(PLAN.assets_marker)
    return ins


def sample_inputs(w):
    job = PLAN.sample_job(f"{R}/samples/{w.run}/seed{w.seed}/{w.key}.done.json")
    return {"config": str(job.job), "done": ancient(str(job.run.done)), "assets": assets_inputs()}


def cell_inputs(w):
    return cell_job_inputs(PLAN.cell_job_of(PLAN.cell(w.table, w.name)))


def cell_job_inputs(job):
    """An evaluation job's config, its cells' sampling markers, and the reference and feature network."""
    markers = {str(PLAN.sample_job_of(s).marker) for c in job.cells for s in c.samples}
    ins = {"config": str(job.job), "samples": sorted(markers)}
    if PLAN.evaluation.features == "digits":
        ins["reference"], ins["weights"] = str(PLAN.reference), str(PLAN.digits_net)
    else:
        ins["assets"] = assets_inputs()  # the ADM reference batch and Inception weights
    return ins


DIAGNOSTICS = [str(d.path) for d in PLAN.diagnostics.values()]  # empty without a diagnostics section


def diagnostic(w):
    """The plan's spec of the diagnostics figure a job makes (dar.plan.Diagnostic)."""
    return PLAN.diagnostics[w.figure]
