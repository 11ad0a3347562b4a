# Sampling: one job per sampling job of the plan (dar.plan.SampleJob): a single sample file at the paper's scale,
# every sample file of a run's seed at digits scale (evaluation.sample_jobs). Each sample file is named with its
# fingerprint and shared by every cell and figure point that needs it; the job's output is its marker, written
# after all its files, so a killed job never looks finished.


rule sample:
    input:
        unpack(sample_inputs),
    output:
        marker=f"{R}/samples/{{run}}/seed{{seed}}/{{key}}.done.json",
    log:
        f"{R}/logs/sample/{{run}}_seed{{seed}}_{{key}}.log",
    benchmark:
        bench("sample", "{run}_seed{seed}_{key}")
    threads: 1
    resources:
        **res(time_min=120),
    conda:
        ENV
    shell:
        launch("sample-sets", f"{PLAN.preset.name}-sample-{{wildcards.run}}-seed{{wildcards.seed}}-{{wildcards.key}}")
        + " --config {input.config} > {log} 2>&1"
