"""Frozen configuration dataclasses, one per zoo model, with a JSON round trip."""

import dataclasses
import json
from typing import Any, TypeVar

from tfstyle import registry
from tfstyle.errors import InputError

_Config = TypeVar("_Config")

LAYOUTS = ("auto", "folder", "vctk", "gtzan", "manifest")  # dataset folder layouts (see tfstyle.data)


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    """A str field with a fixed set of values: validated by _check_choices, and an enum flag on the command line."""
    return dataclasses.field(default=default, metadata={"choices": choices})


def _check_choices(config: Any) -> None:
    for field in dataclasses.fields(config):
        choices = field.metadata.get("choices")
        if choices and getattr(config, field.name) not in choices:
            raise InputError(f"{field.name} must be one of {', '.join(choices)}; got {getattr(config, field.name)!r}")


@dataclasses.dataclass(frozen=True)
class RandomCNNConfig:
    """The untrained wide-shallow CNN (Ulyanov & Lebedev 2016).

    Attributes:
        n_filters: random filters in the one 1-D convolution over time; the Gram matrix is n_filters x n_filters.
        kernel_width: filter width in STFT frames (11 frames = 255 ms at hop 512, 22.05 kHz).
        seed: seed of the random filters; the same seed gives the same features on every machine.
    """

    n_filters: int = 4096
    kernel_width: int = 11
    seed: int = 0

    def __post_init__(self):
        _require_positive(self, "n_filters", "kernel_width")


@dataclasses.dataclass(frozen=True)
class SpectrogramConfig:
    """No network: the log-magnitude spectrogram as the features (the reference the zoo's features must beat).
    Nothing to set; it works at any sample rate and STFT."""


@dataclasses.dataclass(frozen=True)
class ConvAEConfig:
    """Symmetric 2-D convolutional autoencoder over (time, frequency) of a log-magnitude spectrogram.

    Attributes:
        sample_rate, frame_length, frame_step: the signal the model is trained on (travels with exports).
        filters: channels of the encoder's conv layers (the decoder mirrors them).
        kernel_size: square kernel size.
        first_layer_dilation: > 1 dilates the first conv over time and frequency (stride 1 there instead of 2).
        batch_norm: each conv is followed by activation then BatchNorm; False drops the BatchNorm.
        activation: "relu" or "leaky_relu".
    """

    sample_rate: int = 16000
    frame_length: int = 2048
    frame_step: int = 512
    filters: tuple[int, ...] = (16, 32, 32, 64)
    kernel_size: int = 3
    first_layer_dilation: int = 1
    batch_norm: bool = True
    activation: str = _choice("relu", ("relu", "leaky_relu"))

    def __post_init__(self):
        _require_positive(self, "sample_rate", "frame_length", "frame_step", "kernel_size", "first_layer_dilation")
        if not self.filters or any(not isinstance(f, int) or f < 1 for f in self.filters):
            raise InputError(f"filters must be positive integers, got {self.filters}")
        _check_choices(self)


@dataclasses.dataclass(frozen=True)
class DilatedConvAEConfig(ConvAEConfig):
    """`conv_ae` with its first layer dilated 2x over time and frequency."""

    first_layer_dilation: int = 2


@dataclasses.dataclass(frozen=True)
class Seq2SeqLSTMAEConfig:
    """LSTM encoder over frames -> fixed-length vector -> LSTM decoder (Dai & Le 2015).

    Attributes:
        sample_rate, frame_length, frame_step: the signal the model is trained on.
        projection_units: width of the per-frame dense projection before the encoder.
        lstm_units: size of both LSTMs and of the fixed-length embedding.
    """

    sample_rate: int = 16000
    frame_length: int = 2048
    frame_step: int = 512
    projection_units: int = 128
    lstm_units: int = 256

    def __post_init__(self):
        _require_positive(self, "sample_rate", "frame_length", "frame_step", "projection_units", "lstm_units")


@dataclasses.dataclass(frozen=True)
class StyleEncoderConfig:
    """Linear encoder/decoder over clip-level style features (tfstyle.spectral_ops.style_features).

    Attributes:
        sample_rate, frame_length, frame_step: the signal the features are computed from.
        embedding_dim: size of the style embedding.
    """

    sample_rate: int = 22050
    frame_length: int = 2048
    frame_step: int = 512
    embedding_dim: int = 16

    def __post_init__(self):
        _require_positive(self, "sample_rate", "frame_length", "frame_step", "embedding_dim")


@dataclasses.dataclass(frozen=True)
class SpeakerEncoderConfig:
    """Dilated 1-D convolutions over time of a projected log spectrogram, trained to tell speakers apart.

    Attributes:
        sample_rate, frame_length, frame_step: the signal the model is trained on.
        projection: width of the learnt per-frame projection of the STFT bins (a learnt filterbank).
        channels: channels of each of the three convolutions (kernel 5, then 3 with dilation 2 and 3).
        embedding_dim: size of the utterance embedding (from the last layer's time mean and spread).
        num_speakers: outputs of the training classifier; at least the number of labels in the training data.
    """

    sample_rate: int = 16000
    frame_length: int = 1024
    frame_step: int = 256
    projection: int = 128
    channels: int = 256
    embedding_dim: int = 128
    num_speakers: int = 256

    def __post_init__(self):
        _require_positive(self, "sample_rate", "frame_length", "frame_step", "projection", "channels",
                          "embedding_dim", "num_speakers")


@dataclasses.dataclass(frozen=True)
class TimbreEncoderConfig(SpeakerEncoderConfig):
    """speaker_encoder's network for instruments: trained to tell General MIDI programs apart, at music's rate.

    Attributes: as SpeakerEncoderConfig's, with music's signal (22.05 kHz, 2048-point STFT) and num_speakers
    counting instruments.
    """

    sample_rate: int = 22050
    frame_length: int = 2048
    frame_step: int = 512
    num_speakers: int = 128


@dataclasses.dataclass(frozen=True)
class ContentEncoderConfig:
    """Dilated 1-D convolutions over time whose last layer follows what is said, not who says it.

    Trained on pairs of one sentence in two voices, frames aligned by DTW (tfstyle.aligned_data).

    Attributes:
        sample_rate, frame_length, frame_step: the signal the model is trained on.
        input_lifter: the input is each frame's spectral envelope: its cepstrum below this quefrency (samples), so
            that the harmonics, and with them the voice's pitch, never reach the network (0: the whole spectrum).
        projection: width of the learnt per-frame projection of the STFT bins.
        channels: channels of each of the four convolutions (kernel 5, then 3 with dilation 2, 4 and 8).
        content_dim: channels of the content layer.
        frame_temperature: softmax temperature of the frame contrast (aligned frames against all others).
        gram_temperature: softmax temperature of the Gram contrast (a clip's Gram against its pair's).
        gram_weight: weight of the Gram contrast beside the frame contrast.
        speaker_confusion_weight: weight of the term that keeps a speaker classifier on the content Grams at
            chance (0 switches the classifier off).
        num_speakers: outputs of that classifier; at least the number of labels in the training data.
    """

    sample_rate: int = 16000
    frame_length: int = 1024
    frame_step: int = 256
    input_lifter: int = 30
    projection: int = 128
    channels: int = 256
    content_dim: int = 64
    frame_temperature: float = 0.1
    gram_temperature: float = 0.05
    gram_weight: float = 1.0
    speaker_confusion_weight: float = 0.0
    num_speakers: int = 256

    def __post_init__(self):
        _require_positive(self, "sample_rate", "frame_length", "frame_step", "projection", "channels",
                          "content_dim", "num_speakers")
        if not (self.frame_temperature > 0 and self.gram_temperature > 0):
            raise InputError("frame_temperature and gram_temperature must be > 0")
        if self.gram_weight < 0 or self.speaker_confusion_weight < 0:
            raise InputError("gram_weight and speaker_confusion_weight must be >= 0")
        if not 0 <= self.input_lifter <= self.frame_length // 2:
            raise InputError(f"input_lifter must be between 0 and frame_length / 2 ({self.frame_length // 2}), "
                             f"got {self.input_lifter}")


@dataclasses.dataclass(frozen=True)
class ConvVAEConfig:
    """Convolutional VAE over log-mel spectrograms (content) + linear style encoder + recombination decoder.

    Attributes:
        sample_rate, frame_length, frame_step: the signal the model is trained on.
        n_mels: mel bands of the VAE's input.
        filters: channels of the encoder's stride-2 conv layers (decoders mirror them).
        latent_channels: channels of the latent map (time / 2^len(filters) x mels / 2^len(filters)).
        embedding_dim: size of the style embedding.
        kl_weight: weight of the KL divergence against the unit Gaussian.
        recombination_weight: weight of the linear-spectrogram loss of the recombination decoder.
    """

    sample_rate: int = 22050
    frame_length: int = 2048
    frame_step: int = 512
    n_mels: int = 64
    filters: tuple[int, ...] = (16, 32, 64)
    latent_channels: int = 8
    embedding_dim: int = 16
    kl_weight: float = 1e-3
    recombination_weight: float = 1.0

    def __post_init__(self):
        _require_positive(self, "sample_rate", "frame_length", "frame_step", "n_mels", "latent_channels",
                          "embedding_dim")
        if not self.filters or any(not isinstance(f, int) or f < 1 for f in self.filters):
            raise InputError(f"filters must be positive integers, got {self.filters}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """How a model is trained (see tfstyle.train_lib).

    Attributes:
        steps: total optimiser steps (a resumed run continues to this count).
        batch_size: global batch size (split across replicas).
        learning_rate: Adam's learning rate.
        checkpoint_every: steps between checkpoints.
        summary_every: steps between TensorBoard scalars (images and audio every 10x as many).
        validation_every: steps between validation passes.
        strategy: "default" (one device), "mirrored" (all local devices) or "multi_worker_mirrored" (TF_CONFIG).
        cpu_devices: split the CPU into this many logical devices (for mirrored training without GPUs).
    """

    steps: int = 2000
    batch_size: int = 16
    learning_rate: float = 1e-3
    checkpoint_every: int = 200
    summary_every: int = 20
    validation_every: int = 200
    strategy: str = _choice("default", ("default", "mirrored", "multi_worker_mirrored"))
    cpu_devices: int = 1

    def __post_init__(self):
        _require_positive(self, "steps", "batch_size", "checkpoint_every", "summary_every", "validation_every",
                          "cpu_devices")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be positive, got {self.learning_rate}")
        _check_choices(self)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """A dataset folder and how clips are drawn from it (see tfstyle.data).

    Attributes:
        data_dir: the dataset folder.
        layout: "auto", "folder", "vctk", "gtzan" or "manifest".
        manifest: CSV with `path` and a label column, for the manifest layout.
        label_column: manifest column whose values the split keeps disjoint ("" picks speaker_id, speaker, label,
            genre or instrument, the first the CSV has).
        sample_rate: files are resampled to this rate (Hz).
        clip_seconds: length of each training clip.
        frame_length / frame_step: STFT window and hop in samples.
        validation_fraction: share of labels (speakers, genres) held out for validation.
        seed: seeds the split, the clip positions and the augmentation.
        augment: master switch of the augmentation below.
        time_stretch: maximum relative tempo change (0.2 = +-20 %); 0 disables.
        pitch_shift_semitones: maximum pitch shift either way; 0 disables.
        noise_stddev: standard deviation of added Gaussian noise (full scale 1); 0 disables.
    """

    data_dir: str = ""
    layout: str = _choice("auto", LAYOUTS)
    manifest: str = ""
    label_column: str = ""
    sample_rate: int = 16000
    clip_seconds: float = 1.0
    frame_length: int = 2048
    frame_step: int = 512
    validation_fraction: float = 0.2
    seed: int = 0
    augment: bool = True
    time_stretch: float = 0.2
    pitch_shift_semitones: float = 2.0
    noise_stddev: float = 0.003

    def __post_init__(self):
        _require_positive(self, "sample_rate", "frame_length", "frame_step")
        if not self.clip_seconds * self.sample_rate >= self.frame_length:
            raise InputError(f"clip_seconds={self.clip_seconds} is shorter than one STFT frame")
        if not 0 <= self.validation_fraction < 1:
            raise InputError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if not 0 <= self.time_stretch < 1:
            raise InputError(f"time_stretch must be in [0, 1), got {self.time_stretch}")
        if self.pitch_shift_semitones < 0 or self.noise_stddev < 0:
            raise InputError("pitch_shift_semitones and noise_stddev must be >= 0")
        _check_choices(self)


SPLIT_FIELDS = ("layout", "label_column", "validation_fraction", "seed")


def split_of(data: DataConfig) -> dict:
    """The DataConfig fields that decide which files a run holds out (exports record them for evaluate)."""
    return {field: getattr(data, field) for field in SPLIT_FIELDS}


EXPERIMENT_CONFIG_FILE = "config.json"  # in a training run's model_dir


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything a training run depends on; written to MODEL_DIR/config.json.

    Attributes:
        model: the zoo name.
        model_config: that model's config dataclass (registry.lookup(model).config_class).
        data: the data and how clips are drawn from it.
        train: how the model is trained.
    """

    model: str
    model_config: Any
    data: DataConfig
    train: TrainConfig

    def __post_init__(self):
        spec = registry.lookup(self.model)
        if not isinstance(self.model_config, spec.config_class):
            raise TypeError(f"{self.model} takes a {spec.config_class.__name__}, "
                            f"got {type(self.model_config).__name__}")
        for field in ("sample_rate", "frame_length", "frame_step"):  # the data is decoded for the model's signal
            wanted = getattr(self.model_config, field, None)
            if wanted is not None and getattr(self.data, field) != wanted:
                raise InputError(f"data {field} {getattr(self.data, field)} differs from the model's {wanted}")

    def to_json(self) -> str:
        return json.dumps({"model": self.model, "model_config": dataclasses.asdict(self.model_config),
                           "data": dataclasses.asdict(self.data), "train": dataclasses.asdict(self.train)},
                          indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ExperimentConfig":
        values = json.loads(text)
        spec = registry.lookup(values["model"])
        return cls(model=values["model"],
                   model_config=from_json(spec.config_class, json.dumps(values["model_config"])),
                   data=from_json(DataConfig, json.dumps(values["data"])),
                   train=from_json(TrainConfig, json.dumps(values["train"])))


@dataclasses.dataclass(frozen=True)
class TransferConfig:
    """Settings of a style transfer (see tfstyle.transfer).

    Attributes:
        method: "source_filter" converts a voice (tfstyle.source_filter: pitch range, vocal-tract length and
            envelope statistics moved to the style's, then resynthesised); "gram" optimises the spectrogram
            through --model's features (the other settings below); "auto" takes source_filter when both clips
            sound like speech (`source_filter.sounds_like_speech`) and no model was asked for (see
            tfstyle.transfer.choose_method), and gram otherwise. A model that recombines content and style itself
            (conv_vae) does so under "auto".
        steps: optimiser steps.
        learning_rate: Adam's initial step size, in log1p-magnitude units.
        learning_rate_decay: the learning rate is multiplied by this over the whole run (exponential decay).
        init: "content" starts from the content spectrogram, "noise" from seeded noise of the content's level.
        content_weight: weight of the content loss; 0 gives style only (keeping the content through `init`).
        style_weight: weight of the style loss.
        content_layers / style_layers: feature layer -> weight; empty means the model's layers of that role (its
            exported `feature_roles`), else every feature layer, weight 1.
        gram_over: "time" or "time_frequency" (see tfstyle.losses.gram_matrix).
        gram_window: most frames per Gram matrix: a longer clip is matched window by window, keeping the time per
            second of audio constant (see tfstyle.losses.StyleTarget); 512 frames is 11.9 s at 22.05 kHz with the
            default hop. 0 = one Gram over the whole clip however long.
        tv_weight: weight of the total-variation penalty on the optimised log-magnitude.
        l2_weight: weight of the L2 magnitude penalty.
        griffin_lim_iters: phase-retrieval iterations for the output waveform.
        griffin_lim_momentum: 0.99 is fast Griffin-Lim, 0 the classic algorithm.
        griffin_lim_init: Griffin-Lim starts from the content clip's phases ("content") or random ones ("random").
        seed: seeds the noise init and Griffin-Lim's random initial phase.
        optimizer: "adam", or "lbfgs" (scipy's L-BFGS-B with the valid range as bounds; `steps` iterations).
        precision: "float32", "bfloat16" (matmuls of models that offer it, e.g. the random CNN) or "auto"
            (bfloat16 where a quick probe finds it faster on this machine).
        explicit_gram: always form the channels x channels Gram matrices (the original formulation, slower; the
            default takes the cheaper exact form, see tfstyle.losses.StyleTarget).
        style_lifter: > 0 keeps only the spectral envelope of what the optimisation changed (the change's cepstrum
            below this quefrency, in samples): the content's harmonics, and so its pitch and notes, stay as they
            were. 0 keeps the whole change.
        keep_loudness: give every frame of the result the content frame's loudness (its magnitude's norm), so that
            pauses and the loudness contour stay the content's.
    """

    method: str = _choice("auto", ("auto", "source_filter", "gram"))
    steps: int = 100
    learning_rate: float = 0.1
    learning_rate_decay: float = 0.1
    init: str = _choice("content", ("content", "noise"))
    content_weight: float = 0.0
    style_weight: float = 1.0
    content_layers: tuple[tuple[str, float], ...] = ()
    style_layers: tuple[tuple[str, float], ...] = ()
    gram_over: str = _choice("time", ("time", "time_frequency"))
    gram_window: int = 512
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    griffin_lim_iters: int = 100
    griffin_lim_momentum: float = 0.99
    griffin_lim_init: str = _choice("content", ("content", "random"))
    seed: int = 0
    optimizer: str = _choice("adam", ("adam", "lbfgs"))
    precision: str = _choice("auto", ("auto", "float32", "bfloat16"))
    explicit_gram: bool = False
    style_lifter: int = 30
    keep_loudness: bool = True

    def __post_init__(self):
        _require_positive(self, "steps")
        _check_choices(self)
        if not isinstance(self.style_lifter, int) or self.style_lifter < 0:
            raise InputError(f"style_lifter must be a whole number of samples >= 0, got {self.style_lifter!r}")
        if not isinstance(self.gram_window, int) or self.gram_window < 0:
            raise InputError(f"gram_window must be a whole number of frames >= 0, got {self.gram_window!r}")
        if not self.learning_rate > 0:
            raise InputError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0 < self.learning_rate_decay <= 1:
            raise InputError(f"learning_rate_decay must be in (0, 1], got {self.learning_rate_decay}")
        for name in ("content_weight", "style_weight", "tv_weight", "l2_weight"):
            if not getattr(self, name) >= 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.griffin_lim_iters < 0:
            raise InputError(f"griffin_lim_iters must be >= 0, got {self.griffin_lim_iters}")
        if not 0 <= self.griffin_lim_momentum < 1:
            raise InputError(f"griffin_lim_momentum must be in [0, 1), got {self.griffin_lim_momentum}")


def _require_positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")


def to_json(config: Any) -> str:
    """Serialises a config dataclass to JSON."""
    return json.dumps(dataclasses.asdict(config), indent=2, sort_keys=True)


def from_json(config_class: type[_Config], text: str) -> _Config:
    """Rebuilds a config of `config_class` from JSON; unknown fields are an error, missing ones take defaults."""
    values = json.loads(text)
    known = {field.name for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"{config_class.__name__} has no field(s) {', '.join(unknown)}")
    return config_class(**{name: _as_tuples(value) for name, value in values.items()})


def _as_tuples(value: Any) -> Any:
    # JSON has only lists; the frozen configs hold tuples (e.g. layer weights as ((name, weight), ...)).
    return tuple(_as_tuples(item) for item in value) if isinstance(value, list) else value
