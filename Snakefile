# The reproduction DAG of "Rethinking Cross-Layer Information Routing in Diffusion Transformers".
#
#   snakemake --cores 2                                  digits-scale reproduction (default preset)
#   snakemake --cores 2 --config preset=smoke            the same DAG in about a minute
#   snakemake --profile slurm --config preset=imagenet256   the paper's protocol on a SLURM cluster
#   python -m dar cells                                  every table cell, its path and rerun command
#
# The grid (runs, cells) is data: dar/presets/<preset>.yaml (or any grid .yaml given as the preset), validated
# against dar/presets/grid.schema.yaml and compiled once into typed job specs (dar/plan.py); every job reads one
# resolved config file, results/<preset>/jobs/<kind>/<name>.json. Heavy jobs run through `python -m dar.launch`
# (submitit); where they run (local / slurm) and their size come from rule resources, set by slurm/config.yaml.

from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "workflow/config/config.yaml"


report: "workflow/report/workflow.rst"  # snakemake --report report.html: the description, figures, table, claims, page


validate(config, "workflow/schemas/top.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/diagnostics.smk"
include: "workflow/rules/benchmarks.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        PLAN.table_path,
        PLAN.claims_path,
        KERNEL_BENCH,
        DIAGNOSTICS,
        REPORT,
