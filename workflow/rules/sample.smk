# Sampling: one .npz per (run, seed, milestone, sampler, NFE, guidance, N), shared by every cell
# and figure point that needs it.


rule sample:
    input:
        done=f"{R}/runs/{{run}}/seed{{seed}}/done.json",
    output:
        npz=f"{R}/samples/{{run}}/seed{{seed}}/{{stem}}.npz",
        protocol=f"{R}/samples/{{run}}/seed{{seed}}/{{stem}}.npz.json",
    log:
        f"{R}/logs/sample/{{run}}_seed{{seed}}_{{stem}}.log",
    threads: 1
    resources:
        **res(time_min=120),
    params:
        args=lambda w: q(GRID.sample_args(sample_key(w))),
        submitit=SUBMITIT,
    conda:
        ENV
    shell:
        launch("sample", "sample-{wildcards.run}-seed{wildcards.seed}-{wildcards.stem}") + " {params.args} > {log} 2>&1"
