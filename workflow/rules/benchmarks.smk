# Benchmarks: the Fig. 6 kernel benchmark (GPU at paper scale, labelled CPU smoke numbers otherwise).


rule kernel_bench:
    output:
        result=KERNEL_BENCH,
    log:
        f"{R}/logs/kernel_bench.log",
    threads: 1
    resources:
        **res(time_min=60),
    params:
        device=GRID.data.get("kernel_bench", {}).get("device", "cuda"),
        submitit=SUBMITIT,
    conda:
        ENV
    shell:
        launch("kernel-bench", "kernel-bench") + " --device {params.device} --out {output.result} > {log} 2>&1"
