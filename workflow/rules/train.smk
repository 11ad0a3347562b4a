# Training: one rule instance per (run, seed), in the run folder named by the run's fingerprint
# (results/<preset>/runs/<run>/seed<k>-<fingerprint>/). Checkpoints live in it, outside `output:`, so a killed
# or failed job keeps them and the rerun resumes; done.json marks the end. A changed config names another
# folder, so it trains afresh and the old run stays.


rule train:
    input:
        unpack(train_inputs),
    output:
        done=f"{R}/runs/{{run}}/{{folder}}/done.json",
    wildcard_constraints:
        folder=r"seed\d+-[0-9a-f]+",
    log:
        f"{R}/logs/train/{{run}}_{{folder}}.log",
    benchmark:
        bench("train", "{run}_{folder}")
    threads: 1
    resources:
        **res(time_min=240),
    conda:
        ENV
    shell:
        launch("train", f"{PLAN.preset.name}-train-{{wildcards.run}}-{{wildcards.folder}}") + " --config {input.config} > {log} 2>&1"
