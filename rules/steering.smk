# Steering: does the vector do anything? Add (or subtract) coef x unit vector at the output of decoder
# layer L while generating, against a random direction of the same norm, and measure behaviour, read-back
# and fluency (README "Does the vector do anything?"). Off unless steering.enabled.
#   steering_baseline   one job: the unsteered responses and each layer's mean residual norm (no vector
#                       reads it, so a new vector, trait or ratio never regenerates it)
#   steer               one job per trait (one model load): every layer, direction, position, ratio and
#                       control of the trait, batched; a changed vector reruns its trait only
#   steering_table      tables/steering.parquet (one row per prompt x condition) and the chosen ratios
from traitflow.steering.plan import plan_steering, steering_files, steering_generation

try:
    STEERING = plan_steering(PLAN.settings.steering, PLAN)
except TraitflowError as err:
    exit_with_error("plan", err)
STEERING_FILES = steering_files(EXP)
STEERING_TARGETS = [STEERING_FILES[k] for k in ("parquet", "summary", "figures")] if STEERING else []


if STEERING:
    STEER_TRAITS = list(STEERING["traits"])

    localrules:
        steering_table,

    rule steering_baseline:
        input:
            model=PLAN.model_files,
        output:
            STEERING_FILES["baseline"],
        params:
            **model_params(),
            prompts=STEERING["prompts"],  # keys and texts: an edited prompt reruns the baselines
            generation=steering_generation(PLAN.settings.steering, generation_params()),
        log:
            f"{LOGS}/steering/baseline.log",
        benchmark:
            benchmark_path("steering", name="baseline")
        resources:
            **model_resources(),
        conda:
            CONDA_ENV
        script:
            "../scripts/steer_baseline.py"

    rule steer:
        input:
            baseline=STEERING_FILES["baseline"],
            vectors=lambda w: list(STEERING["traits"][w.trait]["vectors"].values()),
            model=PLAN.model_files,
        output:
            STEERING_FILES["responses"],
        wildcard_constraints:
            trait="|".join(STEER_TRAITS),
        params:
            **model_params(),
            method=lambda w: STEERING["traits"][w.trait]["method"],
            vector_layer=lambda w: STEERING["traits"][w.trait]["vector_layer"],
            vectors=lambda w: {str(l): p for l, p in STEERING["traits"][w.trait]["vectors"].items()},
            vectors_sha256=lambda w: user_fingerprints(STEERING["traits"][w.trait]["vectors"].values()),
            prompts=lambda w: STEERING["traits"][w.trait]["prompts"],  # {direction: [prompt keys]}
            behaviour=lambda w: config["steering"]["behaviour"].get(w.trait),
            settings={k: config["steering"][k] for k in ("ratios", "directions", "positions", "random_control",
                                                         "control_seed", "ablate")},
            generation=steering_generation(PLAN.settings.steering, generation_params()),
        log:
            f"{LOGS}/steering/{{trait}}.log",
        benchmark:
            benchmark_path("steering", name="{trait}")
        resources:
            **model_resources(),
        conda:
            CONDA_ENV
        script:
            "../scripts/steer.py"

    rule steering_table:
        input:
            steered=expand(STEERING_FILES["responses"], trait=STEER_TRAITS),
        output:
            parquet=STEERING_FILES["parquet"],
            summary=STEERING_FILES["summary"],
        params:
            max_nll_increase=config["steering"]["max_nll_increase"],
            min_distinct2=config["steering"]["min_distinct2"],
        log:
            f"{LOGS}/steering/table.log",
        conda:
            CONDA_ENV
        script:
            "../scripts/steer_table.py"
