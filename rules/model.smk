# The embedded demo model: built here, then loaded with from_pretrained like any model.


rule build_demo_model:
    output:
        config=f"{DEMO_MODEL_DIR}/config.json",
        weights=f"{DEMO_MODEL_DIR}/model.safetensors",
        tokenizer=f"{DEMO_MODEL_DIR}/tokenizer.json",
    params:
        spec=config.get("demo_model", {}),
    log:
        "logs/build_demo_model.log",
    benchmark:
        "logs/benchmarks/build_demo_model.tsv"
    conda:
        CONDA_ENV
    script:
        "../scripts/build_demo_model.py"
