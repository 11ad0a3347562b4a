# The HTML report: reports/<preset>/index.html (self-contained: figures embedded) and reports/index.html,
# the list of every preset page. Diagnostics (Figs. 2, 3, 5, chunk-size theory) of the preset are inputs;
# `python -m dar report` run by hand shows an empty slot with the command for each missing one.
#   snakemake --report report.html    Snakemake's report: the workflow description (workflow/report/), the figures,
#                                     table.csv, claims.json and this page, each with its caption and category

REPORT = str(PLAN.report_page)


rule report:
    input:
        table=PLAN.table_path,
        claims=PLAN.claims_path,
        kernel=KERNEL_BENCH,
        diagnostics=DIAGNOSTICS,  # rendered into the figure slots (empty when the preset has none)
    output:
        html=report(
            REPORT,
            caption="../report/report.rst",
            category="Report",
            labels={"preset": PLAN.preset.name, "page": "tables, figures, provenance"},
        ),
        landing=report(
            "reports/index.html",
            caption="../report/report.rst",
            category="Report",
            labels={"preset": "all", "page": "list of presets"},
        ),
        figures=report(
            directory(str(PLAN.report_figures)),
            patterns=["{figure}.png"],
            caption="../report/figures.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        f"{R}/logs/report.log",
    benchmark:
        bench("report", "report")
    params:
        preset=PLAN.preset_arg,
        results=PLAN.results,
    conda:
        ENV
    localrule: True
    shell:
        "python -m dar report --preset {params.preset} --results {params.results} --table {input.table} "
        "--claims {input.claims} --kernel-bench {input.kernel} --out {output.html} --landing {output.landing} --figures {output.figures} > {log} 2>&1"
