import json
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from tfstyle import evaluate
from conftest import assert_one_line_usage_error, run_command, tiny_model, write_clips


def test_gram_cosines_match_explicit_grams(rng):
    matrices = [rng.random((t, 6)).astype(np.float32) for t in (3, 5, 4)]
    grams = [m.T @ m / len(m) for m in matrices]
    expected = np.array([[np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b)) for b in grams] for a in grams])
    np.testing.assert_allclose(evaluate.gram_cosine_similarities([tf.constant(m) for m in matrices]), expected,
                               rtol=1e-5)


def test_identification_accuracy_counts_nearest_references():
    labels = ["a", "a", "b", "b", "c", "c"]
    is_query = np.array([False, True, False, True, False, True])
    similarity = np.eye(6)
    similarity[1, 0] = similarity[3, 2] = 0.9  # a and b queries find their own references
    similarity[5, 0] = 0.9  # the c query finds an a reference
    assert evaluate.identification_accuracy(similarity, labels, is_query) == pytest.approx(2 / 3)
    assert evaluate.identification_accuracy(similarity, labels, is_query, {"a", "b"}) == 1.0


def test_regression_scores():
    target = np.array([[1.0, 2.0], [2.0, 0.0], [3.0, 1.0]])
    assert evaluate.regression_scores(target, target) == {"r2": 1.0, "r2_variance_weighted": 1.0,
                                                          "cosine": pytest.approx(1.0), "mae": 0.0, "examples": 3}
    mean_only = evaluate.regression_scores(np.tile(target.mean(0), (3, 1)), target)
    assert mean_only["r2"] == pytest.approx(0.0) and mean_only["mae"] > 0


@pytest.mark.parametrize("name, sections", [("conv_ae", {"identification", "reconstruction"}),
                                            ("conv_vae", {"identification", "content"}),
                                            ("style_encoder", {"style"})])
@pytest.mark.slow
def test_evaluate_cli_on_a_saved_model(name, sections, exported, tmp_path):
    write_clips(tmp_path / "data", speakers=("s1", "s2", "s3", "s4", "s5"), per_speaker=4)
    _, path = exported[name]
    completed = run_command([sys.executable, "-m", "tfstyle.evaluate", f"--model={path}",
                             f"--data_dir={tmp_path / 'data'}", "--validation_fraction=0.4",
                             f"--output={tmp_path / 'report.json'}"])
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report == json.loads((tmp_path / "report.json").read_text())
    assert sections <= set(report) and report["model"] == name
    if "identification" in report:
        first_layer = next(v for k, v in report["identification"].items() if isinstance(v, dict))
        assert 0.0 <= first_layer["accuracy_5_labels"] <= 1.0 and "accuracy_4_labels" in first_layer
    if "style" in report:
        assert report["style"]["r2"] <= 1.0 and report["style"]["mae"] >= 0.0


@pytest.mark.slow
def test_evaluate_bad_input(tmp_path):
    completed = run_command([sys.executable, "-m", "tfstyle.evaluate", "--model=conv_ae", "--data_dir=/no/data"])
    assert_one_line_usage_error(completed, "data folder does not exist")


@pytest.mark.parametrize("flag, rate", [(None, 8000), ("--sample_rate=11025", 11025)])
@pytest.mark.slow
def test_random_cnn_is_evaluated_at_the_datas_own_rate(flag, rate, tmp_path):
    write_clips(tmp_path / "data", speakers=("s1", "s2"), per_speaker=2)  # written at 8 kHz
    (tmp_path / "data" / "s1" / "a_broken.wav").write_text("not audio")  # the first file: its rate is unknown
    completed = run_command([sys.executable, "-m", "tfstyle.evaluate", "--model=random_cnn",
                             f"--data_dir={tmp_path / 'data'}", "--subset_size=2"] + ([flag] if flag else []))
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["sample_rate"] == rate
    assert report["identification"]["conv"]["accuracy_2_labels"] == 1.0  # two very different tones


@pytest.mark.parametrize("model, rate, message", [("conv_ae", 11025, "works at the 8000 Hz it was exported with"),
                                                 ("random_cnn", 0, "at least 1000 Hz")])
@pytest.mark.slow
def test_bad_sample_rates(model, rate, message, exported, tmp_path):
    write_clips(tmp_path / "data", speakers=("s1", "s2"), per_speaker=2)
    model = exported[model][1] if model != "random_cnn" else model
    completed = run_command([sys.executable, "-m", "tfstyle.evaluate", f"--model={model}",
                             f"--data_dir={tmp_path / 'data'}", f"--sample_rate={rate}"])
    assert_one_line_usage_error(completed, message)


@pytest.mark.slow
def test_evaluate_holds_out_the_split_the_model_was_trained_with(tmp_path):
    from tfstyle import configs, export

    write_clips(tmp_path / "data", speakers=("s1", "s2", "s3", "s4"), per_speaker=2)
    model, config = tiny_model("conv_ae")
    data_config = configs.DataConfig(sample_rate=8000, frame_length=256, frame_step=64, validation_fraction=0.5,
                                     seed=7)
    path = export.export_saved_model("conv_ae", model, config, str(tmp_path / "conv_ae"), data_config=data_config)
    recorded = run_command([sys.executable, "-m", "tfstyle.evaluate", f"--model={path}",
                            f"--data_dir={tmp_path / 'data'}"])
    assert recorded.returncode == 0, recorded.stderr
    split = json.loads(recorded.stdout)["split"]
    assert split["validation_fraction"] == 0.5 and split["seed"] == 7
    told = run_command([sys.executable, "-m", "tfstyle.evaluate", f"--model={path}", f"--data_dir={tmp_path / 'data'}",
                        "--validation_fraction=0.25"])
    assert told.returncode == 0, told.stderr
    assert json.loads(told.stdout)["split"]["validation_fraction"] == 0.25


def test_content_identification_looks_only_across_labels():
    labels = ["a", "a", "b", "b"]
    contents = ["s1", "s2", "s1", "s2"]
    similarity = np.eye(4)
    similarity[0, 1] = similarity[1, 0] = 0.99  # same speaker, other sentence: never a candidate
    similarity[0, 2] = similarity[2, 0] = 0.5  # a/s1 and b/s1 find each other
    similarity[1, 2] = similarity[2, 1] = 0.6  # a/s2 finds b/s1: wrong
    similarity[3, 0] = similarity[0, 3] = 0.1
    similarity[3, 1] = similarity[1, 3] = 0.3  # b/s2 finds a/s2; b/s1 finds a/s2 (0.6): wrong
    assert evaluate.content_identification_accuracy(similarity, labels, contents) == pytest.approx(0.5)
    assert evaluate.content_identification_accuracy(similarity, labels, ["x", "y", "z", "w"]) is None


def write_parallel_clips(folder, rate=8000):
    """Three "speakers" (timbres: harmonic counts) saying the same three "sentences" (pitch glides), 2 s each."""
    t = np.arange(2 * rate) / rate
    for harmonics, speaker in ((1, "s1"), (3, "s2"), (8, "s3")):
        (folder / speaker).mkdir(parents=True)
        for sentence, (f0, f1) in {"h01": (200, 400), "h02": (500, 250), "h03": (300, 300)}.items():
            phase = 2 * np.pi * (f0 * t + (f1 - f0) * t**2 / 4)
            clip = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1))
            soundfile.write(folder / speaker / f"{sentence}.wav", (0.3 * clip / np.abs(clip).max()), rate)


def test_windows_and_content_identification_on_a_parallel_corpus(tmp_path):
    from tfstyle import configs, registry

    write_parallel_clips(tmp_path / "data")
    model = registry.build_model("random_cnn", n_filters=32, kernel_width=3)
    data_config = configs.DataConfig(data_dir=str(tmp_path / "data"), sample_rate=8000, frame_length=256,
                                     frame_step=64, augment=False)
    whole = evaluate.evaluate("random_cnn", model, data_config, subset_size=2)["identification"]
    windows = evaluate.evaluate("random_cnn", model, data_config, subset_size=2,
                                window_seconds=0.5)["identification"]
    assert whole["window_seconds"] == "whole files" and windows["window_seconds"] == 0.5
    assert (whole["references"], whole["queries"]) == (3, 6)  # per speaker: 1 of 3 files refers, 2 ask
    assert (windows["references"], windows["queries"]) == (12, 24)  # four 0.5 s windows of each
    for report in (whole, windows):
        layer = report["conv"]
        assert 0.0 <= layer["accuracy_3_labels"] <= 1.0
        assert 0.0 <= layer["content_accuracy_across_labels"] <= 1.0
    assert windows["conv"]["content_accuracy_across_labels"] > 1 / 3  # better than chance over three sentences
    assert whole["conv"]["role"] == "style"


def test_a_content_model_reports_its_layer_as_content(tmp_path):
    from tfstyle import configs

    write_parallel_clips(tmp_path / "data")
    model, _ = tiny_model("content_encoder")
    data_config = configs.DataConfig(data_dir=str(tmp_path / "data"), sample_rate=8000, frame_length=256,
                                     frame_step=64, augment=False)
    layer = evaluate.evaluate("content_encoder", model, data_config, subset_size=2)["identification"]["content"]
    assert layer["role"] == "content" and 0.0 <= layer["content_accuracy_across_labels"] <= 1.0
