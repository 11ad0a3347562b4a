# Sampling: one .npz per (run, seed, milestone, sampler, NFE, guidance, N), named with its fingerprint and
# shared by every cell and figure point that needs it.


rule sample:
    input:
        unpack(sample_inputs),
    output:
        npz=f"{R}/samples/{{run}}/seed{{seed}}/{{stem}}.npz",
        protocol=f"{R}/samples/{{run}}/seed{{seed}}/{{stem}}.npz.json",
    log:
        f"{R}/logs/sample/{{run}}_seed{{seed}}_{{stem}}.log",
    threads: 1
    resources:
        **res(time_min=120),
    conda:
        ENV
    shell:
        launch("sample", f"{PLAN.preset.name}-sample-{{wildcards.run}}-seed{{wildcards.seed}}-{{wildcards.stem}}")
        + " --config {input.config} > {log} 2>&1"
