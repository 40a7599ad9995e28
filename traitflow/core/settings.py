"""The config read once: one frozen dataclass per section that code below the plan reads.

The plan (traitflow.plan.workflow.make_plan) builds a Settings from the config the
schema has checked and completed; lower modules take a section of it, or plain
values, never the config dict. Rules may still read config keys that are only a
job's params. Standard library only: the Snakefile imports this at every invocation.

Values are kept as the config gives them (lists stay lists): error lines print them.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSettings:
    name: str  # config model: a local folder, a Hugging Face name, a .gguf file or traitflow-demo
    demo_spec: dict | None = None  # config demo_model: the demo model's size (traitflow.demo.spec)
    sha256: str | None = None  # config model_sha256: what a GGUF file must hash to


@dataclass(frozen=True)
class InputSettings:
    """Where an experiment's prompts and trait files are found."""

    prompts: list | None = None  # config prompts: the default prompt set, inline
    prompts_file: str | None = None  # config prompts_file: the default set's file
    prompt_sets: str | list = "all"  # config prompt_sets: the sets run
    layout: str | dict | None = None  # config layout: a preset name or patterns (traitflow.experiment.layouts)


@dataclass(frozen=True)
class VectorSettings:
    layer: int | None = None  # None: the model's middle layer
    method: str = "auto"
    position: str | list | None = None  # None: the default position (traitflow.experiment.examples)
    presentation: str = "auto"
    allow_model_mismatch: bool = False
    variant: str | None = None  # the variant whose vectors are used (with `variants:`); None: the first


@dataclass(frozen=True)
class JobSettings:
    """What model jobs ask for, `auto` where the config says so (traitflow.model.modeling.plan_model_settings)."""

    gpu: int | str = "auto"  # config resources.gpu
    mem_mb: int | str = "auto"  # config resources.mem_mb
    device: str = "auto"  # config capture.device
    dtype: str = "auto"  # config capture.dtype
    chat_template: bool | str = "auto"  # config generation.chat_template


@dataclass(frozen=True)
class SteeringSettings:
    """config steering, as the steering plan reads it (its jobs' own params come from the rules)."""

    enabled: bool
    traits: str | list
    method: str
    layers: list
    directions: list
    ablate: bool
    prompt_set: str
    prompts_file: str | None
    max_prompts: int | None
    behaviour: dict
    max_new_tokens: int | None
    temperature: float


@dataclass(frozen=True)
class Settings:
    experiment: str
    traits: str | list  # config traits: all or names
    model: ModelSettings
    inputs: InputSettings
    vector: VectorSettings
    jobs: JobSettings
    steering: SteeringSettings
    variants: list  # config variants as listed ([] without); traitflow.variants.plan checks them
    max_new_tokens: int  # config generation.max_new_tokens: room a prompt leaves in the context
    prompts_per_job: int  # config capture.prompts_per_job: the shard size


def input_settings(config):
    """InputSettings of a config, or of a part of one (traitflow.plan.orphans reads only these keys)."""
    return InputSettings(prompts=config.get("prompts"), prompts_file=config.get("prompts_file"),
                         prompt_sets=config.get("prompt_sets", "all"), layout=config.get("layout"))


def _steering_settings(section):
    return SteeringSettings(**{k: section[k] for k in SteeringSettings.__dataclass_fields__})


def settings_from_config(config):
    """The config, checked and completed by the schema, -> Settings."""
    vector, resources, capture, generation = config["vector"], config["resources"], config["capture"], \
        config["generation"]
    return Settings(
        experiment=config["experiment"], traits=config["traits"],
        model=ModelSettings(name=config["model"], demo_spec=config.get("demo_model"),
                            sha256=config.get("model_sha256")),
        inputs=input_settings(config),
        vector=VectorSettings(layer=vector.get("layer"), method=vector.get("method", "auto"),
                              position=vector.get("position"), presentation=vector.get("presentation", "auto"),
                              allow_model_mismatch=vector.get("allow_model_mismatch", False),
                              variant=vector.get("variant")),
        jobs=JobSettings(gpu=resources.get("gpu", "auto"), mem_mb=resources.get("mem_mb", "auto"),
                         device=capture.get("device", "auto"), dtype=capture.get("dtype", "auto"),
                         chat_template=generation.get("chat_template", "auto")),
        steering=_steering_settings(config["steering"]),
        variants=list(config.get("variants") or []),
        max_new_tokens=generation["max_new_tokens"], prompts_per_job=capture["prompts_per_job"])
