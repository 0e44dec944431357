"""`train`: the training loop, from a `TrainConfig` to a `TrainResult`.

Reads top to bottom: seed, load data, build the model, then per epoch apply the
fine-tuning strategy, train, validate, keep the best weights; finally evaluate the
best weights on the test set. When the first units of the model are frozen and
`feature_cache` is on, batches are the cached outputs of that frozen prefix and only
the rest of the model runs (see trainer.features).
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainer.atomic import save_atomic
from trainer.config import TrainConfig
from trainer.data import (
    DataSplits,
    EpochBatchSampler,
    EpochLoader,
    ImageTensors,
    load_splits,
    make_loader,
    normalize,
)
from trainer.errors import Interrupted, OutOfMemoryError, TrainerError
from trainer.features import (
    MAX_CACHE_BYTES,
    FeatureCache,
    estimated_bytes,
    feature_shape,
)
from trainer.imagecache import resolve_cache_dir
from trainer.models import build_model, weights_identity
from trainer.result import EpochMetrics, TrainResult
from trainer.strategies import FrozenBatchNorm2d, Stage, Strategy, count_parameters

log = logging.getLogger("trainer")

Batches = Iterable[tuple[Tensor, Tensor]]

#: Cached features up to this size are kept on the GPU for the whole run.
RESIDENT_BYTES = 2 << 30


def train(
    config: TrainConfig,
    on_epoch: Callable[[EpochMetrics], bool] | None = None,
    stop_event: threading.Event | None = None,
) -> TrainResult:
    """Train one run and return its result; `on_epoch` returning True stops after that epoch.

    Raises `Interrupted` at the next batch boundary once `stop_event` is set,
    `OutOfMemoryError` when the device runs out of memory, and other `TrainerError`s
    for bad data or weights.
    """
    device = resolve_device(config.device)
    try:
        return _train(config, device, on_epoch, stop_event)
    except torch.cuda.OutOfMemoryError as e:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        smaller = max(1, config.batch_size // 2)
        raise OutOfMemoryError(
            f"{device} ran out of memory with batch_size {config.batch_size} "
            f"({config.model}, {config.image_size} px, mode {config.mode}): "
            f"lower batch_size (e.g. {smaller}) or image_size"
        ) from e


def _train(
    config: TrainConfig,
    device: torch.device,
    on_epoch: Callable[[EpochMetrics], bool] | None,
    stop_event: threading.Event | None,
) -> TrainResult:
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    splits = load_splits(config)
    if splits.skipped_files:
        log.warning(
            "skipped %d file(s) that cannot be used:\n  %s",
            len(splits.skipped_files),
            "\n  ".join(splits.skipped_files),
        )
    num_classes = len(splits.class_names)
    model = build_model(config, num_classes).to(device)
    if device.type == "cuda" and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    precision = Precision.choose(config.amp, device)
    strategy = Strategy(model, config)
    inputs = Inputs(config, splits, strategy, device, precision, stop_event)
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    scaler = torch.amp.GradScaler(device.type, enabled=precision.dtype == torch.float16)
    optimizer: torch.optim.Optimizer | None = None

    history: list[EpochMetrics] = []
    best_val, best_epoch, best_state = -1.0, 0, None
    stale_epochs, stop_reason = 0, None
    train_images, train_seconds = 0, 0.0
    checkpoint = Path(config.checkpoint_dir) / "best.pt" if config.checkpoint_dir else None
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        stage = strategy.apply(epoch)
        optimizer = _update_optimizer(optimizer, config, strategy, stage, epoch)
        source = inputs.source(strategy.frozen_units())
        source.prepare(epoch)  # builds or reads the feature cache, outside the timed part
        model.train()
        train_start = time.perf_counter()
        train_loss, train_acc, seen = _train_epoch(
            source, epoch, optimizer, scaler, criterion, precision, config.grad_clip, stop_event
        )
        epoch_train_seconds = time.perf_counter() - train_start
        val = evaluate(
            source.forward, source.val_batches(), criterion, precision, num_classes, stop_event
        )
        train_images += seen
        train_seconds += epoch_train_seconds

        if val.accuracy > best_val + config.min_delta or best_state is None:
            best_val, best_epoch, stale_epochs = val.accuracy, epoch, 0
            best_state = snapshot(model, share_frozen=strategy.frozen_set_is_fixed)
            if checkpoint is not None:
                _save_checkpoint(
                    checkpoint, _checkpoint_payload(config, splits, best_state, epoch, best_val)
                )
        else:
            stale_epochs += 1
        metrics = EpochMetrics(
            epoch=epoch,
            epochs=config.epochs,
            train_loss=train_loss,
            train_accuracy=train_acc,
            val_loss=val.loss,
            val_accuracy=val.accuracy,
            best_val_accuracy=best_val,
            lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - epoch_start,
            images_per_second=seen / max(epoch_train_seconds, 1e-9),
        )
        history.append(metrics)
        log.info(
            "epoch %d/%d train_loss %.4f train_acc %.3f val_loss %.4f val_acc %.3f (%.1fs, %.0f img/s)",
            epoch, config.epochs, train_loss, train_acc, val.loss, val.accuracy,
            metrics.seconds, metrics.images_per_second,
        )  # fmt: skip
        if on_epoch is not None and on_epoch(metrics):
            stop_reason = f"stopped by on_epoch after epoch {epoch}"
            break
        if config.patience and stale_epochs >= config.patience and epoch < config.epochs:
            stop_reason = (
                f"early stopping: no val_accuracy gain above {config.min_delta} for "
                f"{config.patience} epochs (best {best_val:.3f} at epoch {best_epoch})"
            )
            break

    assert best_state is not None  # epochs >= 1, and the first epoch always sets it
    if stop_reason:
        log.info(stop_reason)
    # Reload what was written, so the test accuracy is that of the checkpoint users get.
    model.load_state_dict(_read_best(checkpoint) if checkpoint is not None else best_state)
    source = inputs.source(strategy.frozen_units())
    test = evaluate(
        source.forward, source.test_batches(), criterion, precision, num_classes, stop_event
    )
    trainable, total = count_parameters(model)
    return TrainResult(
        best_val_accuracy=best_val,
        best_epoch=best_epoch,
        test_accuracy=test.accuracy if test.count else None,
        test_loss=test.loss if test.count else None,
        per_class_accuracy=test.per_class(splits.class_names),
        confusion_matrix=test.confusion,
        class_names=list(splits.class_names),
        epochs_run=len(history),
        stopped_early=stop_reason is not None,
        stop_reason=stop_reason,
        trainable_params=trainable,
        total_params=total,
        wall_seconds=time.perf_counter() - started,
        images_per_second=train_images / max(train_seconds, 1e-9),
        checkpoint_path=str(checkpoint) if checkpoint is not None else None,
        skipped_files=list(splits.skipped_files),
        history=history,
    )


def resolve_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu; a CUDA device that is not there is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise TrainerError(
            f"device {name!r} is not a device name: use auto, cpu, cuda or cuda:N"
        ) from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainerError(
                f"device {name!r} asked for, but CUDA is not available here: use device 'cpu' or 'auto'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise TrainerError(
                f"device {name!r} does not exist: {torch.cuda.device_count()} CUDA devices visible"
            )
    return device


@dataclass(frozen=True)
class Precision:
    """Autocast settings: `dtype` None means float32."""

    device_type: str
    dtype: torch.dtype | None

    @staticmethod
    def choose(amp: str, device: torch.device) -> Precision:
        """AMP only on CUDA; `auto` picks bf16 where the GPU supports it, else fp16."""
        if device.type != "cuda" or amp == "off":
            return Precision(device.type, None)
        if amp == "auto":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return Precision(device.type, torch.bfloat16 if amp == "bf16" else torch.float16)

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """The autocast context for forward passes (a no-op in float32)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


class Source:
    """Where one epoch's batches come from and which module they go through."""

    forward: nn.Module

    def prepare(self, epoch: int) -> None:
        """Get what `epoch` needs ready before it is timed."""

    def train_batches(self, epoch: int) -> Batches:
        raise NotImplementedError

    def val_batches(self) -> Batches:
        raise NotImplementedError

    def test_batches(self) -> Batches:
        raise NotImplementedError


class Inputs:
    """Chooses, per frozen-prefix length, between decoded images and cached features."""

    def __init__(
        self,
        config: TrainConfig,
        splits: DataSplits,
        strategy: Strategy,
        device: torch.device,
        precision: Precision,
        stop_event: threading.Event | None,
    ) -> None:
        self.config, self.splits, self.strategy = config, splits, strategy
        self.device, self.precision, self.stop_event = device, precision, stop_event
        self._sources: dict[int, Source] = {}

    def source(self, frozen_units: int) -> Source:
        """The source for a model whose first `frozen_units` units are frozen."""
        if frozen_units not in self._sources:
            cached = self.config.feature_cache and frozen_units > 0 and self._fits(frozen_units)
            self._sources[frozen_units] = (
                FeatureSource(self, frozen_units) if cached else self._image_source()
            )
        return self._sources[frozen_units]

    def _image_source(self) -> Source:
        if 0 not in self._sources:
            self._sources[0] = ImageSource(self)
        return self._sources[0]

    def module(self, units: list[nn.Module]) -> nn.Module:
        """`units` as one module, compiled when the config asks."""
        module: nn.Module = nn.Sequential(*units)
        return torch.compile(module) if self.config.compile else module  # type: ignore[return-value]

    def _fits(self, frozen_units: int) -> bool:
        prefix = nn.Sequential(*self.strategy.units[:frozen_units])
        shape = feature_shape(prefix, self.config.image_size, self.device)
        views = 1 + (self.config.augment_views if self.config.augment != "none" else 0)
        images = len(self.splits.pool.labels) * views + len(self.splits.test.labels)
        needed = estimated_bytes(shape, images)
        if needed > MAX_CACHE_BYTES:
            log.info(
                "feature cache skipped: %.1f GiB for a %d-unit prefix", needed / 2**30, frozen_units
            )
            return False
        return True


class ImageSource(Source):
    """Decoded images through the whole model: the plain path."""

    def __init__(self, inputs: Inputs) -> None:
        config, splits = inputs.config, inputs.splits
        self.inputs = inputs
        self.forward = inputs.module(inputs.strategy.units)
        test_idx = torch.arange(len(splits.test.labels))
        # Built once: with num_workers > 0 the workers persist across epochs.
        self._train = self._loader(splits.pool, splits.train_idx, config.augment, shuffle=True)
        self._val = self._loader(splits.pool, splits.val_idx, "none", shuffle=False)
        self._test = self._loader(splits.test, test_idx, "none", shuffle=False)

    def train_batches(self, epoch: int) -> Batches:
        self._train.set_epoch(epoch)
        return self._on_device(self._train)

    def val_batches(self) -> Batches:
        return self._on_device(self._val)

    def test_batches(self) -> Batches:
        return self._on_device(self._test)

    def _loader(
        self, data: ImageTensors, indices: Tensor, augment: str, *, shuffle: bool
    ) -> EpochLoader:
        config = self.inputs.config
        return make_loader(
            data, indices, config.batch_size, augment=augment, shuffle=shuffle,
            seed=config.seed, num_workers=config.num_workers,
            drop_last=shuffle and lone_last_batch(len(indices), config.batch_size),
        )  # fmt: skip

    def _on_device(self, loader: EpochLoader) -> Iterator[tuple[Tensor, Tensor]]:
        device = self.inputs.device
        channels_last = device.type == "cuda" and self.inputs.config.channels_last
        for images, labels in loader:
            x = normalize(images.to(device, non_blocking=True))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, labels.to(device, non_blocking=True)


class FeatureSource(Source):
    """Cached outputs of the frozen prefix through the trainable suffix only."""

    def __init__(self, inputs: Inputs, frozen_units: int) -> None:
        config, splits, units = inputs.config, inputs.splits, inputs.strategy.units
        self.inputs = inputs
        self.forward = inputs.module(units[frozen_units:])
        identity = {
            "fingerprint": splits.fingerprint,
            "model": config.model,
            "weights": weights_identity(config),
            "image_size": config.image_size,
            "frozen_units": frozen_units,
            "precision": inputs.precision.name,
        }
        root = resolve_cache_dir(config.cache_dir)
        self.cache = FeatureCache(
            root, nn.Sequential(*units[:frozen_units]), identity, inputs.device,
            inputs.precision.autocast, inputs.stop_event,
        )  # fmt: skip
        self._resident: dict[tuple[str, str, int], Tensor] = {}

    def prepare(self, epoch: int) -> None:
        self._train_features(epoch)
        self._features("pool", self.inputs.splits.pool.images)

    def train_batches(self, epoch: int) -> Batches:
        splits = self.inputs.splits
        return self._batches(
            self._train_features(epoch), splits.pool.labels, splits.train_idx, epoch
        )

    def _train_features(self, epoch: int) -> Tensor:
        config, splits = self.inputs.config, self.inputs.splits
        view = (epoch - 1) % config.augment_views
        return self._features("pool", splits.pool.images, config.augment, view)

    def val_batches(self) -> Batches:
        features = self._features("pool", self.inputs.splits.pool.images)
        return self._batches(features, self.inputs.splits.pool.labels, self.inputs.splits.val_idx)

    def test_batches(self) -> Batches:
        test = self.inputs.splits.test
        return self._batches(
            self._features("test", test.images), test.labels, torch.arange(len(test.labels))
        )

    def _features(self, split: str, images: Tensor, augment: str = "none", view: int = 0) -> Tensor:
        """Cached features; on a GPU, small ones are copied there once instead of per batch."""
        features = self.cache.get(split, images, augment, view)
        device = self.inputs.device
        if device.type == "cpu" or features.numel() * features.element_size() > RESIDENT_BYTES:
            return features
        key = (split, augment, view)
        if key not in self._resident:
            self._resident[key] = features.to(device)
        return self._resident[key]

    def _batches(
        self, features: Tensor, labels: Tensor, indices: Tensor, epoch: int | None = None
    ) -> Iterator[tuple[Tensor, Tensor]]:
        config, device = self.inputs.config, self.inputs.device
        # The image loader's own sampler: cached and uncached runs see the same batches.
        training = epoch is not None
        sampler = EpochBatchSampler(
            indices, config.batch_size, shuffle=training, seed=config.seed,
            drop_last=training and lone_last_batch(len(indices), config.batch_size),
        )  # fmt: skip
        sampler.set_epoch(epoch or 0)
        for _, _, idx in sampler:
            # fp16 spatial maps go back to float32; autocast picks the compute precision.
            yield features[idx].to(device, torch.float32, non_blocking=True), labels[idx].to(device)


def lone_last_batch(count: int, batch_size: int) -> bool:
    """True when an epoch would end on a batch of one image, which training drops:
    BatchNorm cannot train on one value per channel (small images reach 1x1 maps).

    >>> lone_last_batch(33, 32), lone_last_batch(34, 32), lone_last_batch(1, 32)
    (True, False, False)
    """
    return count > 1 and count % batch_size == 1


def _train_epoch(
    source: Source,
    epoch: int,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    criterion: nn.Module,
    precision: Precision,
    grad_clip: float,
    stop_event: threading.Event | None,
) -> tuple[float, float, int]:
    """One pass over the training batches; returns (mean loss, accuracy, images)."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    loss_sum = correct = None
    seen = 0
    for x, y in source.train_batches(epoch):
        _check_stop(stop_event, epoch)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            logits = source.forward(x)
            loss = criterion(logits, y)
        scaler.scale(loss).backward()
        if grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, grad_clip)
        scaler.step(optimizer)
        scaler.update()
        # Accumulate on the device: one host sync per epoch, not per batch.
        batch_loss = loss.detach().float() * len(y)
        batch_correct = (logits.argmax(1) == y).sum()
        loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
        correct = batch_correct if correct is None else correct + batch_correct
        seen += len(y)
    if not seen or loss_sum is None or correct is None:
        return 0.0, 0.0, 0
    return loss_sum.item() / seen, correct.item() / seen, seen


@dataclass(frozen=True)
class Evaluation:
    """Loss, accuracy and confusion matrix (rows = true class) of one pass over a split."""

    loss: float
    accuracy: float
    count: int
    confusion: list[list[int]]

    def per_class(self, class_names: list[str]) -> dict[str, float]:
        """Accuracy per true class (classes with no example are left out)."""
        return {
            name: row[i] / sum(row)
            for i, (name, row) in enumerate(zip(class_names, self.confusion, strict=False))
            if sum(row)
        }


def evaluate(
    forward: nn.Module,
    batches: Batches,
    criterion: nn.Module,
    precision: Precision,
    num_classes: int,
    stop_event: threading.Event | None = None,
) -> Evaluation:
    """Evaluate `forward` in eval mode under inference_mode, then restore its train mode."""
    was_training = forward.training
    forward.eval()
    losses: list[Tensor] = []
    hits: list[Tensor] = []
    pairs: list[Tensor] = []
    count = 0
    try:
        with torch.inference_mode():
            for x, y in batches:
                _check_stop(stop_event, None)
                with precision.autocast():
                    logits = forward(x)
                predicted = logits.argmax(1)
                losses.append(criterion(logits.float(), y) * len(y))
                hits.append((predicted == y).sum())
                pairs.append(y * num_classes + predicted)
                count += len(y)
    finally:
        forward.train(was_training)
    if not count:
        return Evaluation(
            loss=0.0,
            accuracy=0.0,
            count=0,
            confusion=[[0] * num_classes for _ in range(num_classes)],
        )
    confusion = torch.bincount(torch.cat(pairs).cpu(), minlength=num_classes**2).view(
        num_classes, num_classes
    )
    # One host sync per evaluation.
    return Evaluation(
        loss=torch.stack(losses).sum().item() / count,
        accuracy=torch.stack(hits).sum().item() / count,
        count=count,
        confusion=confusion.tolist(),
    )


def snapshot(model: nn.Module, *, share_frozen: bool) -> dict[str, Tensor]:
    """The model's state_dict with every tensor that can still change copied to the CPU.

    With `share_frozen` (the frozen set never changes in this run) frozen parameters and
    the buffers of frozen BatchNorm layers are shared, not copied: a head run then copies
    the head, not the backbone, at every new best epoch.
    """
    fixed: set[int] = set()
    if share_frozen:
        fixed = {id(p) for p in model.parameters() if not p.requires_grad}
        fixed |= {
            id(b)
            for m in model.modules()
            if isinstance(m, FrozenBatchNorm2d)
            for b in m.buffers(recurse=False)
        }
    return {
        key: tensor.detach() if id(tensor) in fixed else tensor.detach().to("cpu", copy=True)
        for key, tensor in model.state_dict(keep_vars=True).items()
    }


def schedule_factor(config: TrainConfig, epoch: int) -> float:
    """The learning-rate multiplier of 1-based `epoch` (StepLR / cosine stepped per epoch).

    >>> from trainer.config import TrainConfig
    >>> cfg = TrainConfig(data_dir="d", scheduler="step", step_size=2, gamma=0.5)
    >>> [schedule_factor(cfg, e) for e in (1, 2, 3, 5)]
    [1.0, 1.0, 0.5, 0.25]
    """
    if config.scheduler == "step":
        return config.gamma ** ((epoch - 1) // config.step_size)
    if config.scheduler == "cosine":
        return 0.5 * (1 + math.cos(math.pi * (epoch - 1) / config.epochs))
    return 1.0


def _update_optimizer(
    optimizer: torch.optim.Optimizer | None,
    config: TrainConfig,
    strategy: Strategy,
    stage: Stage,
    epoch: int,
) -> torch.optim.Optimizer:
    """Add a parameter group per newly trainable block and set every group's lr for `epoch`.

    Groups are added, never rebuilt, so optimizer state survives gradual unfreezing.
    The head's group comes first, so `param_groups[0]["lr"]` is the head's lr.
    """
    blocks = dict(strategy.blocks)
    factor = schedule_factor(config, epoch)
    known = {group["name"] for group in optimizer.param_groups} if optimizer else set()
    new_groups = [
        {
            "name": name,
            "params": [p for p in blocks[name].parameters() if p.requires_grad],
            "lr": lr * factor,
        }
        for name, lr in sorted(stage.lrs.items(), key=lambda item: item[0] != "fc")
        if name not in known
    ]
    if optimizer is None:
        optimizer = _make_optimizer(config, new_groups)
    else:
        for group in new_groups:
            optimizer.add_param_group(group)
    for group in optimizer.param_groups:
        group["lr"] = stage.lrs[str(group["name"])] * factor
    return optimizer


def _make_optimizer(config: TrainConfig, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)


def _checkpoint_payload(
    config: TrainConfig, splits: DataSplits, state: dict[str, Tensor], epoch: int, best_val: float
) -> dict[str, Any]:
    return {
        "model": state,
        "config": config.model_dump(),
        "class_names": list(splits.class_names),
        "epoch": epoch,
        "best_val_accuracy": best_val,
    }


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write the best checkpoint atomically; a full or read-only disk is the user's to fix."""
    try:
        save_atomic(path, payload)
    except OSError as e:
        raise TrainerError(
            f"cannot write the checkpoint {path} ({e.strerror or e}): free space there, or "
            "choose another checkpoint_dir (the agent puts it under --home)"
        ) from e


def _read_best(path: Path) -> dict[str, Tensor]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as e:  # the file was written by this run moments ago; anything else is a disk fault
        raise TrainerError(f"cannot read back the checkpoint {path}: {e}") from e
    state: dict[str, Tensor] = payload["model"]
    return state


def _check_stop(stop_event: threading.Event | None, epoch: int | None) -> None:
    if stop_event is not None and stop_event.is_set():
        where = f" in epoch {epoch}" if epoch is not None else ""
        raise Interrupted(f"training stopped at a batch boundary{where}: stop requested")
