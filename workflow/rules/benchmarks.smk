# Benchmarks: the Fig. 6 kernel benchmark (GPU at paper scale, labelled CPU smoke numbers otherwise).


rule kernel_bench:
    input:
        config=str(PLAN.job_path("kernel_bench", "kernel_bench")),
    output:
        result=KERNEL_BENCH,
    log:
        f"{R}/logs/kernel_bench.log",
    benchmark:
        bench("kernel_bench", "kernel_bench")
    threads: 1
    resources:
        **res(time_min=60),
    conda:
        ENV
    shell:
        launch("kernel-bench", f"{PLAN.preset.name}-kernel-bench") + " --config {input.config} > {log} 2>&1"
