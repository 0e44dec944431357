"""Tests for trainer.loop: `train` end to end on a tiny real image folder (resnet18, 32 px)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.imagefolder import write_image_folder
from trainer import (
    EpochMetrics,
    Interrupted,
    OutOfMemoryError,
    TrainConfig,
    TrainerError,
    WeightsError,
    train,
)
from trainer.checkpoint import file_sha256, load_checkpoint, read_state
from trainer.device import Precision, resolve_device
from trainer.models import build_model

torch.set_num_threads(1)

HEAD, LAYER4, TOTAL = 1_539, 8_393_728, 11_178_051  # resnet18, 3 classes (see test_strategies)


@pytest.fixture(scope="module")
def start_weights(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A randomly initialised resnet18 saved as a bare state_dict: 'pretrained' weights offline."""
    path = tmp_path_factory.mktemp("weights") / "start.pt"
    torch.manual_seed(123)
    config = TrainConfig(data_dir="unused", model="resnet18", weights="none", mode="scratch")
    torch.save(build_model(config, 1000).state_dict(), path)
    return str(path)


@pytest.fixture
def make_config(image_folder: Path, start_weights: str, tmp_path: Path) -> Any:
    def make(**overrides: Any) -> TrainConfig:
        values: dict[str, Any] = {
            "data_dir": str(image_folder),
            "model": "resnet18",
            "weights": start_weights,
            "mode": "head",
            "image_size": 32,
            "epochs": 1,
            "batch_size": 8,
            "num_workers": 0,
            "device": "cpu",
            "cache_dir": str(tmp_path / "cache"),
        }
        values.update(overrides)
        return TrainConfig.model_validate(values)

    return make


@pytest.mark.parametrize(
    ("overrides", "trainable"),
    [
        ({"mode": "scratch", "weights": "none"}, TOTAL),
        ({"mode": "head"}, HEAD),
        ({"mode": "head", "feature_cache": False}, HEAD),
        ({"mode": "partial"}, LAYER4 + HEAD),
        ({"mode": "partial", "feature_cache": False}, LAYER4 + HEAD),
        ({"mode": "full", "optimizer": "sgd", "scheduler": "cosine"}, TOTAL),
        ({"mode": "gradual", "epochs": 2}, LAYER4 + HEAD),
        ({"mode": "two_phase", "epochs": 2}, TOTAL),
        (
            {
                "mode": "scratch",
                "model": "cnn",
                "weights": "none",
                "filters": 4,
                "augment": "standard",
            },
            None,
        ),
    ],
)
def test_every_mode_trains_and_reports(
    make_config: Any, overrides: dict[str, Any], trainable: int | None
) -> None:
    config = make_config(**overrides)
    result = train(config)
    assert result.epochs_run == len(result.history) == config.epochs
    assert not result.stopped_early and result.stop_reason is None
    if trainable is not None:
        assert (result.trainable_params, result.total_params) == (trainable, TOTAL)
    assert result.class_names == ["amphibia", "aves", "fungi"]
    assert sum(map(sum, result.confusion_matrix)) == 12  # 4 test images per class
    assert result.test_accuracy == pytest.approx(
        sum(result.confusion_matrix[i][i] for i in range(3)) / 12
    )
    assert set(result.per_class_accuracy) == set(result.class_names)
    assert result.images_per_second > 0 and result.wall_seconds > 0
    assert result.best_val_accuracy == max(m.val_accuracy for m in result.history)
    assert result.checkpoint_path is None


@pytest.mark.parametrize(
    "overrides",
    [
        {
            "mode": "scratch",
            "model": "cnn",
            "weights": "none",
            "filters": 4,
            "dropout": 0.2,
            "augment": "standard",
        },
        {"mode": "head", "dropout": 0.2, "augment": "standard"},
    ],
)
def test_same_seed_same_result(make_config: Any, overrides: dict[str, Any]) -> None:
    config = make_config(epochs=2, **overrides)
    first, second = train(config), train(config)
    assert first.history[-1].train_loss == second.history[-1].train_loss
    assert [m.val_loss for m in first.history] == [m.val_loss for m in second.history]
    assert first.confusion_matrix == second.confusion_matrix


def test_cached_head_run_matches_uncached(make_config: Any) -> None:
    cached = train(make_config(epochs=3, dropout=0.3, lr=0.01))
    plain = train(make_config(epochs=3, dropout=0.3, lr=0.01, feature_cache=False))
    assert [m.val_accuracy for m in cached.history] == [m.val_accuracy for m in plain.history]
    torch.testing.assert_close(
        [m.val_loss for m in cached.history],
        [m.val_loss for m in plain.history],
        rtol=1e-4,
        atol=1e-5,
    )
    assert cached.test_accuracy == plain.test_accuracy


def test_cached_augmented_views_cycle(make_config: Any, tmp_path: Path) -> None:
    result = train(make_config(epochs=3, augment="flip", augment_views=2))
    assert result.epochs_run == 3
    # pool: unaugmented + 2 views; test: unaugmented.
    assert len(list((tmp_path / "cache" / "features").glob("*.pt"))) == 4


def test_early_stopping_when_val_stalls(make_config: Any) -> None:
    result = train(make_config(epochs=6, lr=1e-9, patience=2))
    assert result.epochs_run == 3 and result.stopped_early and result.best_epoch == 1
    assert result.stop_reason == (
        f"early stopping: no val_accuracy gain above 0.0 for 2 epochs "
        f"(best {result.best_val_accuracy:.3f} at epoch 1)"
    )


def test_patience_zero_never_stops(make_config: Any) -> None:
    assert train(make_config(epochs=3, lr=1e-9, patience=0)).epochs_run == 3


def test_on_epoch_true_stops_and_still_tests(make_config: Any) -> None:
    seen: list[EpochMetrics] = []

    def on_epoch(metrics: EpochMetrics) -> bool:
        seen.append(metrics)
        return metrics.epoch == 2

    result = train(make_config(epochs=5, patience=0), on_epoch=on_epoch)
    assert [m.epoch for m in seen] == [1, 2] and seen == result.history
    assert result.stopped_early and "on_epoch" in (result.stop_reason or "")
    assert result.test_accuracy is not None


@pytest.mark.parametrize("feature_cache", [True, False])
def test_stop_event_raises_interrupted(make_config: Any, feature_cache: bool) -> None:
    stop = threading.Event()

    def on_epoch(metrics: EpochMetrics) -> bool:
        stop.set()
        return False

    with pytest.raises(Interrupted, match="epoch 2"):
        train(
            make_config(epochs=3, patience=0, feature_cache=feature_cache),
            on_epoch=on_epoch,
            stop_event=stop,
        )


def test_checkpoint_is_the_best_epoch_and_loads_as_weights(
    make_config: Any, tmp_path: Path
) -> None:
    result = train(make_config(mode="partial", epochs=2, checkpoint_dir=str(tmp_path / "run")))
    path = tmp_path / "run" / "best.pt"
    assert result.checkpoint_path == str(path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert (
        saved["epoch"] == result.best_epoch
        and saved["best_val_accuracy"] == result.best_val_accuracy
    )
    assert saved["class_names"] == result.class_names and saved["config"]["mode"] == "partial"
    assert list((tmp_path / "run").iterdir()) == [path]  # no temp file left behind

    again = train(make_config(weights=str(path), epochs=1, lr=1e-9))
    assert again.history[0].val_accuracy == result.best_val_accuracy
    two_classes = write_image_folder(
        tmp_path / "two", classes=("x", "y"), n_train=6, n_test=2, size=24
    )
    other = train(make_config(data_dir=str(two_classes), weights=str(path)))
    assert other.class_names == ["x", "y"] and len(other.confusion_matrix) == 2


def test_a_head_checkpoint_holds_the_head_and_loads_back_to_the_same_predictions(
    make_config: Any, tmp_path: Path, start_weights: str, image_folder: Path
) -> None:
    config = make_config(epochs=2, checkpoint_dir=str(tmp_path / "run"))
    result = train(config)
    path = Path(str(result.checkpoint_path))
    saved = torch.load(path, map_location="cpu", weights_only=True)
    # Only the trained head is stored; the frozen backbone is the start file, by hash.
    assert set(saved["model"]) == {"fc.1.weight", "fc.1.bias"}
    assert saved["base"] == {"path": start_weights, "sha256": file_sha256(start_weights)}
    assert result.checkpoint_base == start_weights  # what a W&B model artifact adds to it
    assert path.stat().st_size < 100_000 < Path(start_weights).stat().st_size

    start = torch.load(start_weights, weights_only=True)
    full = build_model(make_config(weights="none", mode="scratch"), 3)
    full.load_state_dict(
        {**{k: v for k, v in start.items() if not k.startswith("fc.")}, **saved["model"]}
    )
    loaded = build_model(make_config(weights="none", mode="scratch"), 3)
    load_checkpoint(loaded, path, expected_model="resnet18")
    images = torch.rand(4, 3, 32, 32)
    full.eval()
    loaded.eval()
    torch.testing.assert_close(loaded(images), full(images), rtol=0, atol=0)
    again = train(make_config(weights=str(path), epochs=1, lr=1e-9))
    assert again.history[0].val_accuracy == result.best_val_accuracy


def test_a_full_run_stores_its_whole_state(make_config: Any, tmp_path: Path) -> None:
    result = train(make_config(mode="full", feature_cache=False, checkpoint_dir=str(tmp_path)))
    saved = torch.load(str(result.checkpoint_path), map_location="cpu", weights_only=True)
    assert "base" not in saved and "conv1.weight" in saved["model"]


def test_the_best_epoch_is_written_once_when_the_run_ends(
    make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trainer.loop

    written: list[int] = []
    save = trainer.loop.save_checkpoint

    def counted(path: Path, payload: dict[str, Any]) -> None:
        written.append(payload["epoch"])
        save(path, payload)

    monkeypatch.setattr(trainer.loop, "save_checkpoint", counted)
    result = train(make_config(epochs=3, patience=0, checkpoint_dir=str(tmp_path / "run")))
    assert written == [result.best_epoch]
    stop = threading.Event()
    with pytest.raises(Interrupted):
        train(
            make_config(epochs=3, patience=0, checkpoint_dir=str(tmp_path / "cut")),
            on_epoch=lambda metrics: stop.set() or False,
            stop_event=stop,
        )
    # A run cut short is trained again from its start: it leaves no checkpoint.
    assert written == [result.best_epoch] and not (tmp_path / "cut").exists()


def test_frozen_batchnorm_statistics_do_not_move(
    make_config: Any, tmp_path: Path, start_weights: str
) -> None:
    train(
        make_config(
            mode="partial", epochs=2, feature_cache=False, checkpoint_dir=str(tmp_path / "run")
        )
    )
    start = torch.load(start_weights, weights_only=True)
    best = read_state(tmp_path / "run" / "best.pt", "resnet18")
    torch.testing.assert_close(
        best["layer3.1.bn2.running_mean"], start["layer3.1.bn2.running_mean"]
    )
    torch.testing.assert_close(best["bn1.running_var"], start["bn1.running_var"])
    assert not torch.equal(best["layer4.1.bn2.running_mean"], start["layer4.1.bn2.running_mean"])


def test_step_schedule_and_regularisers(make_config: Any) -> None:
    config = make_config(
        mode="head", epochs=3, patience=0, optimizer="adamw", weight_decay=0.01, scheduler="step",
        step_size=1, gamma=0.5, lr=0.01, label_smoothing=0.1, grad_clip=1.0,
    )  # fmt: skip
    result = train(config)
    assert [m.lr for m in result.history] == pytest.approx([0.01, 0.005, 0.0025])


@pytest.mark.parametrize(
    "overrides", [{"mode": "full", "feature_cache": False}, {"mode": "partial"}]
)
def test_a_lone_last_batch_is_dropped_for_batchnorm(
    make_config: Any, overrides: dict[str, Any]
) -> None:
    # 30 training images (10 per class after the val split) in batches of 29: 29 + 1.
    result = train(make_config(batch_size=29, **overrides))
    assert result.history[0].images_per_second > 0


def test_out_of_memory_names_the_batch_size(
    make_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(self: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(torch.nn.Linear, "forward", out_of_memory)
    with pytest.raises(OutOfMemoryError, match="batch_size 8") as caught:
        train(make_config(feature_cache=False))
    assert "lower batch_size (e.g. 4)" in str(caught.value)


def test_missing_weights_file_is_a_weights_error(make_config: Any, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        train(make_config(weights=str(tmp_path / "nope.pt")))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_is_a_trainer_error() -> None:
    with pytest.raises(TrainerError, match="CUDA is not available"):
        resolve_device("cuda")


def test_device_auto_and_bad_name() -> None:
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(TrainerError, match="not a device name"):
        resolve_device("gpu-please")


@pytest.mark.parametrize("amp", ["auto", "off", "bf16", "fp16"])
def test_amp_is_always_off_on_cpu(amp: str) -> None:
    precision = Precision.choose(amp, torch.device("cpu"))
    assert precision.dtype is None and precision.name == "fp32"


@pytest.mark.slow
def test_compiled_head_run_matches_eager(make_config: Any) -> None:
    eager = train(make_config(epochs=2))
    compiled = train(make_config(epochs=2, compile=True))
    assert [m.val_accuracy for m in compiled.history] == [m.val_accuracy for m in eager.history]
    torch.testing.assert_close(
        [m.val_loss for m in compiled.history],
        [m.val_loss for m in eager.history],
        rtol=1e-4,
        atol=1e-5,
    )
