# Evaluation: one rule instance per table cell (all its seeds), then the collated table.
# `snakemake <cell json> --force` recomputes that cell's metrics from its samples.


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


rule collate:
    input:
        [str(c.path) for c in PLAN.cells],
    output:
        csv=PLAN.table_path,
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
        PLAN.claims_path,
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
