# Diagnostics of cross-layer information flow (Figs. 2, 3, 5, chunk-size theory).
# Their job is not built yet: these targets fail with a message naming what is missing.


rule diagnostics:
    output:
        result=f"{R}/diagnostics/{{figure}}.json",
    log:
        f"{R}/logs/diagnostics_{{figure}}.log",
    conda:
        ENV
    localrule: True
    shell:
        "echo 'diagnostics job ({wildcards.figure}) is not built yet: python -m dar diagnose lands with the "
        "diagnostics issue (Figs. 2, 3, 5 and the chunk-size theory)' | tee {log} >&2; exit 1"
