# Data: assets (network side), latent cache, and the shared digits feature network and reference statistics.


if PLAN.rehearsal is None:

    rule fetch_assets:
        # Runs where Snakemake runs (a login node with network); compute jobs then read the local copies.
        output:
            marker=directory(PLAN.assets_marker),
        log:
            f"{R}/logs/fetch_assets.log",
        benchmark:
            bench("fetch_assets", "fetch_assets")
        params:
            dest=PLAN.assets_dir,
        conda:
            ENV
        localrule: True
        shell:
            "python -m dar fetch-assets --dest {params.dest} > {log} 2>&1 && mkdir -p {output.marker}"

else:

    rule rehearsal_assets:
        # A rehearsal's stand-ins (random weights) and synthetic ImageFolder, made where Snakemake runs.
        input:
            config=str(PLAN.job_path("rehearsal_assets", "assets")),
        output:
            marker=directory(PLAN.assets_marker),
        log:
            f"{R}/logs/rehearsal_assets.log",
        benchmark:
            bench("rehearsal_assets", "rehearsal_assets")
        conda:
            ENV
        localrule: True
        shell:
            "python -m dar rehearsal-assets --config {input.config} > {log} 2>&1 && mkdir -p {output.marker}"


rule cache_latents:
    input:
        config=str(PLAN.job_path("cache_latents", "cache")),
        assets=assets_inputs(),
    output:
        index=LATENTS,
    log:
        f"{R}/logs/cache_latents.log",
    benchmark:
        bench("cache_latents", "cache_latents")
    threads: 1
    resources:
        **res(time_min=60),
    conda:
        ENV
    shell:
        launch("cache-latents", f"{PLAN.preset.name}-cache") + " --config {input.config} > {log} 2>&1"


# The digits feature network and reference statistics are shared by every digits-scale preset: their paths,
# names, logs and submitit folder do not mention the preset, so running another preset reruns neither.
rule digits_features:
    input:
        config=str(PLAN.digits_features_job.job),
    output:
        weights=str(PLAN.digits_net),
    log:
        f"{S}/logs/digits_features.log",
    benchmark:
        bench("digits_features", "digits_features", shared=True)
    threads: 1
    resources:
        **res(time_min=30),
    conda:
        ENV
    shell:
        launch("digits-features", "digits-features", f"{S}/submitit") + " --config {input.config} > {log} 2>&1"


rule reference_stats:
    input:
        config=f"{S}/jobs/reference_{{ref}}.json",
        weights=str(PLAN.digits_net),
    output:
        stats=f"{S}/reference/{{ref}}.npz",
    log:
        f"{S}/logs/reference_{{ref}}.log",
    benchmark:
        bench("reference_stats", "{ref}", shared=True)
    threads: 1
    resources:
        **res(time_min=30),
    conda:
        ENV
    shell:
        launch("reference-stats", "reference-{wildcards.ref}", f"{S}/submitit") + " --config {input.config} > {log} 2>&1"
