# The random demo model (`model: traitflow-demo`, for scale work): built here, one folder per
# demo_model spec (traitflow.demo.spec.demo_model_dir), then loaded with from_pretrained like any model.
# The demo experiment uses the trained chat model shipped in models/traitflow-demo-chat instead.
from traitflow.demo.spec import demo_model_dir

DEMO_DIR = demo_model_dir(config.get("demo_model"))


rule build_demo_model:
    output:
        config=f"{DEMO_DIR}/config.json",
        weights=f"{DEMO_DIR}/model.safetensors",
        tokenizer=f"{DEMO_DIR}/tokenizer.json",
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
