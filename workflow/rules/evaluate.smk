# Evaluation: one rule instance per table cell (all its seeds), then the collated table.
# `snakemake <cell json> --force` recomputes that cell's metrics from its samples.


rule cell:
    input:
        cell_inputs,
    output:
        result=f"{R}/cells/{{table}}/{{name}}.json",
    log:
        f"{R}/logs/cells/{{table}}_{{name}}.log",
    threads: 1
    resources:
        **res(time_min=60),
    params:
        preset=PRESET,
        results=GRID.results,
        submitit=SUBMITIT,
    conda:
        ENV
    shell:
        launch("cell", "cell-{wildcards.table}-{wildcards.name}")
        + " --preset {params.preset} --results {params.results} --table {wildcards.table} --name {wildcards.name} > {log} 2>&1"


rule collate:
    input:
        [str(GRID.cell_path(c)) for c in GRID.cells],
    output:
        csv=GRID.table_path,
        json=str(GRID.table_path).removesuffix(".csv") + ".json",
    log:
        f"{R}/logs/collate.log",
    params:
        preset=PRESET,
        results=GRID.results,
    conda:
        ENV
    localrule: True
    shell:
        "python -m dar collate --preset {params.preset} --results {params.results} --out {output.csv} > {log} 2>&1"
