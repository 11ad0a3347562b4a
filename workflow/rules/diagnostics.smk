# Diagnostics of cross-layer information flow (paper Sec. 3, 5.3, 5.5, App. B): one JSON per figure
# (layout: dar/diagnostics/job.py) with its PNG beside it, under results/<preset>/diagnostics/.
#   fig2, fig3     the preset's diagnostics.runs [residual baseline, DAR run] at diagnostics.iteration
#                  (default: each run's final milestone)
#   fig5           the timestep probe of diagnostics.probe_run (its final milestone)
#   chunk_theory   Eq. 8-9 for the model's L; shows the Table 4 FIDs, so it waits for the Table 4 cells
#                  when the preset has a table4 (no checkpoint of its own)
# Paths and flags come from dar.diagnostics.targets; run names are checked only when a target is requested.
from dar.diagnostics import targets as diag

DIAGNOSTICS = diag.targets(GRID)  # every diagnostics JSON of the preset (empty without a diagnostics section)


rule diagnose:
    input:
        unpack(lambda w: diag.figure_inputs(GRID, w.figure)),
    output:
        result=f"{R}/diagnostics/{{figure}}.json",
        figure=f"{R}/diagnostics/{{figure}}.png",
    wildcard_constraints:
        figure="fig2|fig3|fig5",
    log:
        f"{R}/logs/diagnostics_{{figure}}.log",
    threads: 1
    resources:
        **res(time_min=120),
    params:
        args=lambda w: q(diag.figure_args(GRID, w.figure)),
        submitit=SUBMITIT,
    conda:
        ENV
    shell:
        launch("diagnose", "diagnose-{wildcards.figure}") + " {params.args} --out {output.result} > {log} 2>&1"


rule chunk_theory:
    # Closed-form curves: seconds on any machine, so it runs where Snakemake runs.
    input:
        diag.chunk_theory_inputs(GRID),
    output:
        result=f"{R}/diagnostics/chunk_theory.json",
        figure=f"{R}/diagnostics/chunk_theory.png",
    log:
        f"{R}/logs/diagnostics_chunk_theory.log",
    params:
        args=q(diag.chunk_theory_args(GRID)),
    conda:
        ENV
    localrule: True
    shell:
        "python -m dar diagnose {params.args} --out {output.result} > {log} 2>&1"
