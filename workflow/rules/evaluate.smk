# Evaluation: one job per evaluation job of the plan (dar.plan.CellJob, the grid's evaluation.cell_jobs): a single
# cell at the paper's scale (rule `cell`), every cell of a table at digits scale (rules `cells_<table>`, whose outputs
# are the table's cell JSONs), then the collated table. `snakemake <cell json> --force` recomputes that cell's
# metrics from its samples (per-table: with the rest of its table).

if PLAN.evaluation.cell_jobs == "per-cell":

    rule cell:
        input:
            unpack(cell_inputs),
        output:
            result=f"{R}/cells/{{table}}/{{name}}.json",
        log:
            f"{R}/logs/cells/{{table}}_{{name}}.log",
        benchmark:
            bench("cell", "{table}_{name}")
        threads: 1
        resources:
            **res(time_min=60),
        conda:
            ENV
        shell:
            launch("cell", f"{PLAN.preset.name}-cell-{{wildcards.table}}-{{wildcards.name}}") + " --config {input.config} > {log} 2>&1"

else:
    for _job in PLAN.cell_jobs:

        rule:
            name:
                f"cells_{_job.key}"
            input:
                **cell_job_inputs(_job),
            output:
                [str(c.path) for c in _job.cells],
            log:
                f"{R}/logs/cells/{_job.key}.log",
            benchmark:
                bench("cell", _job.key)
            threads: 1
            resources:
                **res(time_min=60),
            conda:
                ENV
            shell:
                launch("cell-group", f"{PLAN.preset.name}-cells-{_job.key}") + " --config {input.config} > {log} 2>&1"


rule collate:
    input:
        [str(c.path) for c in PLAN.cells],
    output:
        csv=report(str(PLAN.table_path), caption="../report/table.rst", category="Tables", labels={"file": "table.csv"}),
        json=str(PLAN.table_path).removesuffix(".csv") + ".json",
    log:
        f"{R}/logs/collate.log",
    benchmark:
        bench("collate", "collate")
    params:
        preset=PLAN.preset_arg,
        results=PLAN.results,
    conda:
        ENV
    localrule: True
    shell:
        "python -m dar collate --preset {params.preset} --results {params.results} --out {output.csv} > {log} 2>&1"


rule claims:
    # The paper's claims judged on the collated cells and the diagnostics (dar/claims.py): claims.json.
    input:
        table=PLAN.table_path,
        diagnostics=DIAGNOSTICS,
    output:
        report(str(PLAN.claims_path), caption="../report/claims.rst", category="Claims", labels={"file": "claims.json"}),
    log:
        f"{R}/logs/claims.log",
    benchmark:
        bench("claims", "claims")
    params:
        preset=PLAN.preset_arg,
        results=PLAN.results,
    conda:
        ENV
    localrule: True
    shell:
        "python -m dar claims --preset {params.preset} --results {params.results} --out {output} > {log} 2>&1"
