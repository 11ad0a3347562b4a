# Data: assets (network side), latent cache, digits feature network, reference statistics.


rule fetch_assets:
    # Runs where Snakemake runs (a login node with network); compute jobs then read the local copies.
    output:
        marker=directory(GRID.assets_dir / ".fetched"),
    log:
        f"{R}/logs/fetch_assets.log",
    params:
        dest=GRID.assets_dir,
    conda:
        ENV
    localrule: True
    shell:
        "python -m dar fetch-assets --dest {params.dest} > {log} 2>&1 && mkdir -p {output.marker}"


rule cache_latents:
    input:
        cache_inputs,
    output:
        index=f"{R}/latents/index.json",
    log:
        f"{R}/logs/cache_latents.log",
    threads: 1
    resources:
        **res(time_min=60),
    params:
        args=cache_args(),
        submitit=SUBMITIT,
    conda:
        ENV
    shell:
        launch("cache-latents", "cache") + " {params.args} > {log} 2>&1"


rule digits_features:
    output:
        weights=str(GRID.digits_net),
    log:
        f"{GRID.results}/digits_features/train.log",
    threads: 1
    resources:
        **res(time_min=30),
    params:
        folder=GRID.digits_net.parent,
        submitit=SUBMITIT,
    conda:
        ENV
    shell:
        launch("digits-features", "digits-features") + " --out {params.folder} > {log} 2>&1"


rule reference_stats:
    input:
        weights=str(GRID.digits_net),
    output:
        stats=f"{R}/reference/{{ref}}.npz",
    log:
        f"{R}/logs/reference_{{ref}}.log",
    threads: 1
    resources:
        **res(time_min=30),
    params:
        submitit=SUBMITIT,
    conda:
        ENV
    shell:
        launch("reference-stats", "reference-{wildcards.ref}")
        + " --dataset {wildcards.ref} --out {output.stats} --features digits --weights {input.weights} > {log} 2>&1"
