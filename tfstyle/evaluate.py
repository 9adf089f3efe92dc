"""Measures a zoo model on a folder of audio and prints a JSON report.

    python -m tfstyle.evaluate --model=conv_ae --data_dir=PATH/TO/corpus/speech
    python -m tfstyle.evaluate --model=saved_models/conv_vae/2 --data_dir=PATH/TO/corpus/music

What it reports, where the model has it:
  reconstruction   mean squared log-magnitude error and spectral convergence ||S - S_hat|| / ||S|| (pooled over
                   all clips) of the autoencoder's reconstruction, on the held-out split (same seed and fraction
                   as training)
  identification   speaker (or instrument) identification by nearest neighbour on Gram matrices of each feature
                   layer: per label, half of the files (sorted) are references and half queries; accuracy over all
                   labels and averaged over every subset of 4 labels (the published protocol: 0.925 at 4 speakers
                   and 0.485 at 10 for the random CNN on VCTK). With --window_seconds, of fixed-length windows of
                   the files instead. On a parallel corpus (the same file names under every label: sentences,
                   melodies), also content identification: how often an item's nearest item of another label has
                   the same content. A style representation scores high on the first; a content representation
                   high on the second and near chance on the first.
  content          conv_vae: cosine similarity of a held-out clip's content latent and the latent re-encoded from
                   its recombined spectrogram (published on GTZAN: 0.934)
  style            style_encoder: R^2, cosine similarity and MAE of reconstructed style features on held-out
                   clips (published: R^2 0.960, cosine 0.976, MAE 0.143)
"""

import itertools
import json
import os

import numpy as np
import tensorflow as tf
from absl import flags, logging

from tfstyle import audio_io, cli, configs, data, fileutil, loading, losses, registry, spectral_ops
from tfstyle.errors import InputError


def _activations_matrix(features: tf.Tensor) -> tf.Tensor:
    # [1, positions, channels] as the Gram over time sees it (losses.gram_matrix with over="time").
    return losses.positions_by_channels(features, "time")[0]


def gram_cosine_similarities(matrices: list[tf.Tensor]) -> np.ndarray:
    """Cosine similarity of the Gram matrices of [positions, channels] activations, all pairs, without forming
    a channels x channels Gram: <G_a, G_b> = ||A B^T||^2 / (T_a T_b), ||G_a|| = ||A A^T|| / T_a."""
    norms = np.array([float(tf.norm(tf.matmul(m, m, transpose_b=True))) for m in matrices])
    n = len(matrices)
    similarity = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            inner = float(tf.reduce_sum(tf.square(tf.matmul(matrices[i], matrices[j], transpose_b=True))))
            similarity[i, j] = similarity[j, i] = inner / max(norms[i] * norms[j], 1e-30)
    return similarity


def identification_accuracy(similarity: np.ndarray, labels: list[str], is_query: np.ndarray,
                            subset: set[str] | None = None) -> float:
    """Nearest-reference accuracy of the queries whose label is in `subset` (all labels if None)."""
    labels = np.array(labels)
    keep = np.ones(len(labels), bool) if subset is None else np.isin(labels, list(subset))
    queries = np.flatnonzero(is_query & keep)
    references = np.flatnonzero(~is_query & keep)
    best = references[np.argmax(similarity[np.ix_(queries, references)], axis=1)]
    return float(np.mean(labels[best] == labels[queries]))


def content_identification_accuracy(similarity: np.ndarray, labels: list[str], contents: list[str]) -> float | None:
    """How often an item's nearest item of another label (speaker) has the same content (sentence, melody).

    Only items whose content some other label also has are asked; None if there are none (not a parallel corpus).
    """
    labels, contents = np.array(labels), np.array(contents)
    correct = []
    for i in range(len(labels)):
        others = labels != labels[i]
        if not np.any(others & (contents == contents[i])):
            continue
        candidates = np.flatnonzero(others)
        correct.append(contents[candidates[np.argmax(similarity[i, candidates])]] == contents[i])
    return float(np.mean(correct)) if correct else None


def _windows(waveform: tf.Tensor, samples: int) -> list[tf.Tensor]:
    """The whole waveform (samples 0), or its consecutive windows of `samples` (the remainder is dropped)."""
    if not samples:
        return [waveform]
    return [waveform[k * samples:(k + 1) * samples] for k in range(int(waveform.shape[0]) // samples)]


def _speaker_identification(model, files: list[data.AudioFile], signal: dict, subset_size: int,
                            window_seconds: float = 0.0) -> dict:
    waveforms, skipped = {}, []
    window = int(round(window_seconds * signal["sample_rate"]))
    for f in files:
        try:
            waveforms[f.path], _ = audio_io.load_audio(f.path, sample_rate=signal["sample_rate"],
                                                       min_samples=max(signal["frame_length"], window))
        except InputError as e:  # as in training: an unreadable (or, with windows, too short) file is skipped
            logging.warning("skipping audio file: %s", e)
            skipped.append(f.path)
    files = [f for f in files if f.path in waveforms]
    by_label = {}
    for f in files:
        by_label.setdefault(f.label, []).append(f)
    usable = {label: sorted(group, key=lambda f: f.path) for label, group in by_label.items() if len(group) >= 2}
    if len(usable) < 2:
        return {"skipped": "needs at least 2 labels with 2 or more files each"}
    # Items are whole files, or their windows; a window is a reference or a query as its file is.
    labels, contents, is_query = [], [], []
    per_layer = {name: [] for name in model.feature_layer_names}
    for label in sorted(usable):
        group = usable[label]
        for index, f in enumerate(group):
            for piece in _windows(waveforms[f.path], window):
                labels.append(label)
                contents.append(os.path.splitext(os.path.basename(f.path))[0])
                is_query.append(index >= len(group) // 2)
                log_magnitude = spectral_ops.log_magnitude_spectrogram(
                    piece, frame_length=signal["frame_length"], frame_step=signal["frame_step"])
                for name, features in model.features(log_magnitude[tf.newaxis]).items():
                    per_layer[name].append(_activations_matrix(features))
    is_query = np.array(is_query)
    report = {"labels": len(usable), "window_seconds": window_seconds or "whole files",
              "references": int((~is_query).sum()), "queries": int(is_query.sum()), "skipped_files": len(skipped)}
    roles = model.feature_roles() if hasattr(model, "feature_roles") else {}
    for name, matrices in per_layer.items():
        similarity = gram_cosine_similarities(matrices)
        layer = {f"accuracy_{len(usable)}_labels": identification_accuracy(similarity, labels, is_query)}
        if len(usable) > subset_size:
            subsets = list(itertools.combinations(sorted(usable), subset_size))
            layer[f"accuracy_{subset_size}_labels"] = float(np.mean(
                [identification_accuracy(similarity, labels, is_query, set(s)) for s in subsets]))
            layer[f"subsets_of_{subset_size}"] = len(subsets)
        content = content_identification_accuracy(similarity, labels, contents)
        if content is not None:
            # Beside the label accuracy: a content representation should score high here and near chance there.
            layer["content_accuracy_across_labels"] = content
        if name in roles:
            layer["role"] = roles[name]  # "content": the label accuracy above is leakage, lower is better
        report[name] = layer
    return report


def _held_out_batches(data_config, batch_size: int = 8):
    dataset = data.AudioDataset(data_config)
    if not dataset.split.validation:
        raise InputError("no held-out files: use a --validation_fraction above 0 and at least 2 labels")
    return list(dataset.validation(batch_size))


def _signature(model, name: str):
    """A named serving function of a loaded SavedModel (None for in-memory models or when absent)."""
    if isinstance(model, loading.LoadedModel) and model.has_signature(name):
        return model.signature(name)
    return None


def _reconstruction(model, batches) -> dict:
    reconstruct = _signature(model, "reconstruct") or (lambda x: {"reconstruction": model.reconstruct(x)})
    squared_error = squared_norm = squared_log_error = values = 0.0
    for batch in batches:
        original = batch["log_magnitude"]
        rebuilt = reconstruct(original)["reconstruction"]
        squared_log_error += float(tf.reduce_sum(tf.square(rebuilt - original)))
        values += float(tf.size(original))
        magnitude = spectral_ops.magnitude_from_log(original)
        squared_error += float(tf.reduce_sum(tf.square(magnitude - spectral_ops.magnitude_from_log(rebuilt))))
        squared_norm += float(tf.reduce_sum(tf.square(magnitude)))
    # Spectral convergence pooled over all held-out clips: a near-silent clip cannot blow up the average.
    return {"log_magnitude_mse": squared_log_error / values,
            "spectral_convergence": (squared_error / squared_norm) ** 0.5}


def regression_scores(predicted: np.ndarray, target: np.ndarray) -> dict:
    """R^2 (per feature, then averaged; and variance-weighted, which near-constant features cannot swamp), mean
    cosine similarity of the vectors, and MAE."""
    residual = np.sum((target - predicted) ** 2, axis=0)
    total = np.sum((target - target.mean(axis=0)) ** 2, axis=0)
    varying = total > 1e-12
    cosine = np.sum(predicted * target, axis=1) / np.maximum(
        np.linalg.norm(predicted, axis=1) * np.linalg.norm(target, axis=1), 1e-12)
    return {"r2": float(np.mean(1.0 - residual[varying] / total[varying])),
            "r2_variance_weighted": float(1.0 - residual[varying].sum() / total[varying].sum()),
            "cosine": float(np.mean(cosine)), "mae": float(np.mean(np.abs(target - predicted))),
            "examples": int(target.shape[0])}


def _style_scores(model, batches, signal: dict) -> dict:
    """style_encoder: how well style features survive the trip through the embedding."""
    reconstruct = _signature(model, "reconstruct") or (lambda x: {"reconstruction": model(x)})
    predicted, target = [], []
    for batch in batches:
        features = spectral_ops.style_features(batch["waveform"], **signal)
        predicted.append(reconstruct(features)["reconstruction"].numpy())
        target.append(features.numpy())
    return regression_scores(np.concatenate(predicted), np.concatenate(target))


def _content_cosine(model, batches) -> dict:
    encode = _signature(model, "encode") or (lambda x: {"code": model.encode(x)[0]})
    recombine = _signature(model, "recombine") or (
        lambda content, style: {"log_magnitude": model.recombine(content, style)})
    similarities = []
    for batch in batches:
        original = encode(batch["log_magnitude"])["code"]
        recombined = recombine(batch["waveform"], batch["waveform"])["log_magnitude"]
        again = encode(recombined)["code"]
        a = tf.reshape(original, [tf.shape(original)[0], -1])
        b = tf.reshape(again, [tf.shape(again)[0], -1])
        similarities += list((tf.reduce_sum(a * b, 1) / (tf.norm(a, axis=1) * tf.norm(b, axis=1) + 1e-12)).numpy())
    return {"cosine": float(np.mean(similarities))}


def evaluate(model_name: str, model, data_config, *, subset_size: int = 4, identify_column: str = "",
             window_seconds: float = 0.0) -> dict:
    """The report for `model` (in-memory zoo model or LoadedModel) on the data of `data_config`.

    Held-out clips come from the split of `data_config` (its label_column); identification groups files by
    `identify_column` of a manifest instead, when given (e.g. split by melody, identify the instrument).
    With `window_seconds`, identification is of windows that long instead of whole files.
    """
    signal = {k: getattr(data_config, k) for k in ("sample_rate", "frame_length", "frame_step")}
    files = data.list_audio_files(data_config.data_dir, layout=data_config.layout,
                                  manifest=data_config.manifest or None,
                                  label_column=identify_column or data_config.label_column)
    report = {"model": model_name, "data": data_config.manifest or data_config.data_dir, **signal,
              "split": configs.split_of(data_config)}
    measures = registry.lookup(model_name).model_class.EVALUATIONS
    if "identification" in measures:
        report["identification"] = _speaker_identification(model, files, signal, subset_size, window_seconds)
    held_out = _held_out_batches(data_config) if set(measures) - {"identification"} else []
    if "reconstruction" in measures:
        report["reconstruction"] = _reconstruction(model, held_out)
    if "content" in measures:
        report["content"] = _content_cosine(model, held_out)
    if "style" in measures:
        report["style"] = _style_scores(model, held_out, signal)
    return report


def _define_flags() -> None:
    # Defined when the module runs as a command, not on import: the commands share flag names, and tests
    # import several of them as libraries.
    flags.DEFINE_string("model", None, "Zoo name (newest shipped SavedModel; the random CNN in memory) or the path "
                        "of a SavedModel.")
    flags.DEFINE_string("data_dir", None, "Dataset folder (layouts as for training).")
    flags.DEFINE_enum("layout", configs.DataConfig.layout, list(data.LAYOUTS), "How the dataset folder is organised.")
    flags.DEFINE_string("manifest", "", "CSV with path and label columns (layout 'manifest').")
    flags.DEFINE_string("label_column", None, "Manifest column the split keeps disjoint (e.g. melody_id); default: "
                        "the one the model was trained with.")
    flags.DEFINE_string("identify_column", "", "Manifest column to identify by (default: --label_column's).")
    flags.DEFINE_float("validation_fraction", None, "Held-out share of labels; default: the split the model was "
                       f"trained with (recorded at export), else {configs.DataConfig.validation_fraction}.")
    flags.DEFINE_integer("seed", None, "Seed of the split; default: the one the model was trained with, else "
                         f"{configs.DataConfig.seed}.")
    flags.DEFINE_integer("sample_rate", None, "Rate (Hz) for a model that takes any (the random CNN); default: the "
                         "data's own (its first file's). A SavedModel works at the rate it was exported with.")
    flags.DEFINE_float("window_seconds", 0.0, "Identify windows of this many seconds (each file cut into "
                       "consecutive windows, the remainder dropped) instead of whole files; 0 = whole files.")
    flags.DEFINE_integer("subset_size", 4, "Also report identification averaged over all subsets of this many labels.")
    flags.DEFINE_string("output", None, "Also write the report to this JSON file.")


FLAGS = flags.FLAGS


def _data_rate() -> int:
    """The rate of the data's first readable file (the pipeline resamples the others to it)."""
    files = data.list_audio_files(FLAGS.data_dir or "", layout=FLAGS.layout, manifest=FLAGS.manifest or None,
                                  label_column=FLAGS.identify_column or FLAGS.label_column or "")
    for file in files:
        try:
            return audio_io.load_audio(file.path)[1]
        except InputError:
            continue  # skipped later with a warning, like any unreadable file
    raise InputError(f"none of the {len(files)} audio files of the data can be read")


def _split(recorded: dict) -> dict:
    """The split flags, each defaulting to what the model was trained with (recorded at export), else DataConfig's."""
    split = {}
    for field in (f for f in configs.SPLIT_FIELDS if f != "layout"):  # the layout is the data folder's own
        value = FLAGS[field].value
        split[field] = value if value is not None else recorded.get(field, getattr(configs.DataConfig, field))
    return split


def main(argv: list[str]) -> None:
    del argv
    if not FLAGS.model:
        raise InputError("--model is required")
    if not FLAGS.data_dir and not FLAGS.manifest:
        raise InputError("--data_dir (or --manifest) is required")
    resolved = loading.load_model(FLAGS.model)
    model, recorded_split = resolved.model, {}
    if isinstance(model, loading.LoadedModel):
        recorded_split = model.info.get("split", {})
    if resolved.spec.any_sample_rate:  # like the transfer command, work at the data's own rate
        cli.check_sample_rate(FLAGS.sample_rate)
        signal = {"sample_rate": FLAGS.sample_rate or _data_rate(), "frame_length": spectral_ops.FRAME_LENGTH,
                  "frame_step": spectral_ops.FRAME_STEP}
    else:
        signal = model.signal_config()
        if FLAGS.sample_rate not in (None, signal["sample_rate"]):
            raise InputError(f"--sample_rate: {resolved.name} works at the {signal['sample_rate']} Hz it was "
                             "exported with; drop the flag")
    data_config = configs.DataConfig(data_dir=FLAGS.data_dir or "", layout=FLAGS.layout, manifest=FLAGS.manifest,
                                     augment=False, **_split(recorded_split), **signal)
    if FLAGS.window_seconds < 0:
        raise InputError(f"--window_seconds must be >= 0, got {FLAGS.window_seconds}")
    if FLAGS.window_seconds and FLAGS.window_seconds * signal["sample_rate"] < signal["frame_length"]:
        raise InputError(f"--window_seconds={FLAGS.window_seconds} is shorter than one STFT frame")
    report = evaluate(resolved.name, model, data_config, subset_size=FLAGS.subset_size,
                      identify_column=FLAGS.identify_column, window_seconds=FLAGS.window_seconds)
    text = json.dumps(report, indent=2)
    if FLAGS.output:
        fileutil.write_files_atomically({FLAGS.output: (text + "\n").encode()})
    print(text)


def run(argv: list[str] | None = None) -> None:
    _define_flags()
    cli.run(main, argv)


if __name__ == "__main__":
    run()
