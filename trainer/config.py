"""`TrainConfig`: every knob of a training run. Field names are the sweep parameter names.

The sweep spec validator checks every parameter of a sweep YAML against this model,
so a spec that validates is a spec the trainer can run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ModelName = Literal["resnet18", "resnet34", "resnet50", "cnn"]
Mode = Literal["scratch", "head", "partial", "full", "gradual", "two_phase"]
Block = Literal["layer1", "layer2", "layer3", "layer4"]

#: Values of `weights` that are not checkpoint paths.
NAMED_WEIGHTS = ("imagenet", "none")
#: File suffixes accepted for a checkpoint given as `weights`.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
#: Modes that start from pretrained weights and freeze some of them.
FINETUNE_MODES = ("head", "partial", "full", "gradual", "two_phase")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class TrainConfig(BaseModel):
    """One training run. Defaults follow the seed projects (224 px, val_fraction 0.2, patience 3).

    >>> TrainConfig(data_dir="data/inaturalist_12K", mode="head").model
    'resnet50'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Data
    data_dir: str = Field(
        description="Folder with train/<class>/ and val/<class>/ (val = test set)."
    )
    image_size: int = Field(
        224, ge=16, le=1024, description="Images are resized to this square size."
    )
    augment: Literal["none", "flip", "standard"] = Field(
        "none",
        description="none; flip (horizontal); standard (random-resized-crop + flip + colour jitter).",
    )
    augment_views: int = Field(
        4,
        ge=1,
        le=64,
        description="Augmented views precomputed by the feature cache; epochs cycle through them.",
    )
    val_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Stratified share of train/ held out for validation."
    )
    num_workers: int = Field(2, ge=0, le=64, description="DataLoader worker processes.")

    # Model
    model: ModelName = Field(
        "resnet50", description="resnet18, resnet34, resnet50 or cnn (the Part A CNN)."
    )
    weights: str = Field(
        "imagenet", description="imagenet, none, or a checkpoint path (.pt/.pth/.ckpt/.bin)."
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Dropout before the final Linear layer."
    )

    # Part A CNN (model: cnn)
    filters: int = Field(32, ge=1, le=1024, description="CNN: filters of the first conv block.")
    filter_growth: float = Field(
        2.0,
        gt=0.0,
        le=4.0,
        description="CNN: filter multiplier per block (1 same, 2 double, 0.5 half).",
    )
    kernel_size: int = Field(3, ge=1, le=11, description="CNN: conv kernel size.")
    activation: Literal["relu", "gelu", "silu", "mish", "leaky_relu"] = Field(
        "relu", description="CNN: activation."
    )
    batch_norm: bool = Field(True, description="CNN: batch norm after each conv.")
    dense_units: int = Field(
        128, ge=1, le=8192, description="CNN: units of the dense layer before the classifier."
    )

    # Fine-tuning strategy
    mode: Mode = Field("head", description="scratch, head, partial, full, gradual or two_phase.")
    unfreeze_from: Block | None = Field(
        None, description="partial: train this block and every later one."
    )
    freeze_fraction: float | None = Field(
        None,
        ge=0.0,
        lt=1.0,
        description="partial: freeze this fraction of the backbone's parameters (in order).",
    )
    unfreeze_every: int = Field(
        1, ge=1, le=100, description="gradual: unfreeze one more block every k epochs."
    )
    layer_lr_decay: float = Field(
        0.5, gt=0.0, le=1.0, description="gradual: lr multiplier per block from the head down."
    )
    head_epochs: int = Field(
        1, ge=1, le=1000, description="two_phase: epochs of head-only training at lr."
    )
    finetune_lr: float | None = Field(
        None,
        gt=0.0,
        le=10.0,
        description="two_phase: lr once every layer trains (default lr / 10).",
    )

    # Optimisation
    epochs: int = Field(5, ge=1, le=1000)
    batch_size: int = Field(32, ge=1, le=8192)
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0, le=1.0)
    optimizer: Literal["sgd", "adam", "adamw"] = Field("adam")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum.")
    scheduler: Literal["none", "step", "cosine"] = Field("none")
    step_size: int = Field(3, ge=1, le=1000, description="StepLR: epochs between decays.")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="StepLR: decay factor.")
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    grad_clip: float = Field(
        0.0, ge=0.0, le=1e6, description="Max gradient norm; 0 disables clipping."
    )
    amp: Literal["auto", "off", "bf16", "fp16"] = Field(
        "auto",
        description="Mixed precision on CUDA; auto = bf16 where supported; always off on CPU.",
    )
    channels_last: bool = Field(True, description="channels_last memory format on CUDA.")
    compile: bool = Field(False, description="torch.compile the model.")

    # Early stopping and reproducibility
    patience: int = Field(
        3, ge=0, le=1000, description="Epochs without val improvement before stopping; 0 disables."
    )
    min_delta: float = Field(
        0.0, ge=0.0, le=1.0, description="Smallest val accuracy gain that counts as improvement."
    )
    seed: int = Field(42, ge=0, le=2**31 - 1)

    # Where things go (the agent sets these; a notebook user may leave them)
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    feature_cache: bool = Field(
        True, description="Cache decoded images and frozen-backbone features on disk."
    )
    cache_dir: str | None = Field(
        None, description="Cache folder (default: $XDG_CACHE_HOME/sweeper or ~/.cache/sweeper)."
    )
    checkpoint_dir: str | None = Field(None, description="best.pt goes here; none = no checkpoint.")

    @field_validator("weights")
    @classmethod
    def _weights_named_or_path(cls, value: str) -> str:
        if value in NAMED_WEIGHTS or value.endswith(CHECKPOINT_SUFFIXES):
            return value
        raise ValueError(
            f"expected 'imagenet', 'none' or a checkpoint path ending in "
            f"{', '.join(CHECKPOINT_SUFFIXES)}, got {value!r}"
        )

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        problems = cross_field_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def pretrained(self) -> bool:
        """True when training starts from weights someone trained before."""
        return self.weights != "none"


#: The fields that `cross_field_problems` reads: the spec validator tries their combinations.
CROSS_FIELDS = ("mode", "model", "weights", "unfreeze_from", "freeze_fraction")
#: Names people bring from other sweep scripts (the seed projects among them), by the field
#: they mean, so a spec that uses one is told the name to write.
PARAMETER_ALIASES = {
    "learning_rate": "lr",
    "batch": "batch_size",
    "num_epochs": "epochs",
    "optim": "optimizer",
    "base_model": "model",
    "architecture": "model",
    "pretrained": "weights",
    "strategy": "mode",
    "num_filters": "filters",
    "filter_size": "kernel_size",
    "filter_org": "filter_growth",
    "batch_normalization": "batch_norm",
    "data_augmentation": "augment",
    "augmentation": "augment",
    "dense_layer_size": "dense_units",
    "dropout_rate": "dropout",
}


def cross_field_problems(config: TrainConfig) -> list[str]:
    """Rules that involve more than one field; the spec validator applies them per combination."""
    problems: list[str] = []
    if config.mode == "scratch" and config.weights != "none":
        problems.append(
            f"mode 'scratch' trains from random init, so weights must be 'none' (got {config.weights!r})"
        )
    if config.mode in FINETUNE_MODES and config.weights == "none":
        problems.append(
            f"mode {config.mode!r} fine-tunes pretrained weights, so weights cannot be 'none'"
        )
    if config.model == "cnn" and config.mode not in ("scratch", "full"):
        problems.append(
            f"model 'cnn' has no backbone blocks to freeze: mode must be 'scratch' or 'full' (got {config.mode!r})"
        )
    if config.model == "cnn" and config.weights == "imagenet":
        problems.append(
            "model 'cnn' has no ImageNet weights: use weights 'none' or a checkpoint path"
        )
    if config.unfreeze_from is not None and config.freeze_fraction is not None:
        problems.append("give partial mode either unfreeze_from or freeze_fraction, not both")
    return problems
