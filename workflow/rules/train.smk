# Training: one rule instance per (run, seed). Checkpoints live in the run folder, outside
# `output:`, so a killed or failed job keeps them and the rerun resumes; done.json marks the end.


rule train:
    input:
        train_inputs,
    output:
        done=f"{R}/runs/{{run}}/seed{{seed}}/done.json",
    log:
        f"{R}/logs/train/{{run}}_seed{{seed}}.log",
    threads: 1
    resources:
        **res(time_min=240),
    params:
        args=lambda w: q(GRID.train_args(w.run, int(w.seed))),
        submitit=SUBMITIT,
    conda:
        ENV
    shell:
        launch("train", "train-{wildcards.run}-seed{wildcards.seed}") + " {params.args} > {log} 2>&1"
