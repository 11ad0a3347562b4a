# Diagnostics of cross-layer information flow (paper Sec. 3, 5.3, 5.5, App. B): one JSON per figure
# (layout: dar/diagnostics/job.py) with its PNG beside it, under results/<preset>/diagnostics/.
#   fig2, fig3     the preset's diagnostics.runs [residual baseline, DAR run] at diagnostics.iteration
#                  (default: each run's final milestone), first seed
#   fig5           the timestep probe of diagnostics.probe_run (its final milestone)
#   zoo_flow       Fig. 2's statistics for every run of a zoo table (first seed, final milestone)
#   chunk_theory   Eq. 8-9 for the model's L; shows the Table 4 FIDs, so it waits for the Table 4 cells
#                  when the preset has a table4 (no checkpoint of its own)
# Each figure's config, checkpoints and inputs come from the plan (dar.plan.Plan.diagnostics).

rule diagnose:
    input:
        config=lambda w: str(diagnostic(w).job),
        needs=lambda w: [ancient(f) for f in diagnostic(w).needs],
    output:
        result=f"{R}/diagnostics/{{figure}}.json",
        figure=report(
            f"{R}/diagnostics/{{figure}}.png",
            caption="../report/diagnostics.rst",
            category="Diagnostics",
            labels={"figure": "{figure}"},
        ),
    wildcard_constraints:
        figure="fig2|fig3|fig5|zoo_flow",
    log:
        f"{R}/logs/diagnostics_{{figure}}.log",
    benchmark:
        bench("diagnose", "{figure}")
    threads: 1
    resources:
        **res(time_min=120),
    conda:
        ENV
    shell:
        launch("diagnose", f"{PLAN.preset.name}-diagnose-{{wildcards.figure}}") + " --config {input.config} > {log} 2>&1"


rule chunk_theory:
    # Closed-form curves: seconds on any machine, so it runs where Snakemake runs.
    input:
        config=lambda w: str(PLAN.diagnostics["chunk_theory"].job),
        cells=lambda w: list(PLAN.diagnostics["chunk_theory"].inputs),
    output:
        result=f"{R}/diagnostics/chunk_theory.json",
        figure=report(
            f"{R}/diagnostics/chunk_theory.png",
            caption="../report/chunk_theory.rst",
            category="Diagnostics",
            labels={"figure": "chunk_theory"},
        ),
    log:
        f"{R}/logs/diagnostics_chunk_theory.log",
    benchmark:
        bench("chunk_theory", "chunk_theory")
    conda:
        ENV
    localrule: True
    shell:
        "python -m dar diagnose --config {input.config} > {log} 2>&1"
