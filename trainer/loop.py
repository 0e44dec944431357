"""`train`: the training loop, from a `TrainConfig` to a `TrainResult`.

Reads top to bottom: seed, load data, build the model, then per epoch apply the
fine-tuning strategy, train, validate, keep the best weights in memory; finally write
them as the run's checkpoint and evaluate them on the test set. Batches come from a
source (trainer.sources): decoded images, or the cached outputs of a frozen prefix of
the model.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from trainer.checkpoint import checkpoint_payload, save_checkpoint, split_on_base
from trainer.config import TrainConfig
from trainer.data import load_splits
from trainer.device import Precision, resolve_device
from trainer.errors import Interrupted, OutOfMemoryError
from trainer.models import build_model
from trainer.result import EpochMetrics, TrainResult
from trainer.sources import Batches, Inputs, Source
from trainer.strategies import FrozenBatchNorm2d, Stage, Strategy, count_parameters

log = logging.getLogger("trainer")


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
    fixed: set[str] = set()
    for epoch in range(1, config.epochs + 1):
        epoch_start = time.perf_counter()
        stage = strategy.apply(epoch)
        if epoch == 1 and strategy.frozen_set_is_fixed:
            fixed = frozen_keys(model)
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
            best_state = snapshot(model, fixed)
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
    # The best epoch is written once, when the run has ended: a file per improving epoch
    # (45 MB for a resnet18, fsync'd) cost a head run several times its training, and a
    # run that does not end is trained again from its start anyway (never resumed). What
    # stayed frozen is left in the weights file the run started from (a head run's file is
    # its head and a reference to the backbone file).
    base: dict[str, str] | None = None
    if checkpoint is not None:
        stored, base = split_on_base(best_state, fixed, config.weights)
        save_checkpoint(
            checkpoint,
            checkpoint_payload(config, splits.class_names, stored, best_epoch, best_val, base),
        )
    # The test accuracy is that of the weights just written.
    model.load_state_dict(best_state)
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
        checkpoint_base=base["path"] if base is not None else None,
        skipped_files=list(splits.skipped_files),
        history=history,
    )


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


def frozen_keys(model: nn.Module) -> set[str]:
    """The state_dict keys of frozen parameters and of frozen BatchNorm layers' buffers."""
    frozen = {id(p) for p in model.parameters() if not p.requires_grad}
    frozen |= {
        id(b)
        for m in model.modules()
        if isinstance(m, FrozenBatchNorm2d)
        for b in m.buffers(recurse=False)
    }
    return {key for key, t in model.state_dict(keep_vars=True).items() if id(t) in frozen}


def snapshot(model: nn.Module, fixed: set[str]) -> dict[str, Tensor]:
    """The model's state_dict with every tensor that can still change copied to the CPU.

    The tensors named in `fixed` (frozen for the whole run) are shared, not copied: a head
    run then copies the head, not the backbone, at every new best epoch.
    """
    return {
        key: tensor.detach() if key in fixed else tensor.detach().to("cpu", copy=True)
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


def _check_stop(stop_event: threading.Event | None, epoch: int | None) -> None:
    if stop_event is not None and stop_event.is_set():
        where = f" in epoch {epoch}" if epoch is not None else ""
        raise Interrupted(f"training stopped at a batch boundary{where}: stop requested")
