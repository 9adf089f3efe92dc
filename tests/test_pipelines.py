"""Apache Beam pipelines: `tfstyle embed` and `tfstyle transfer --pairs`, on the DirectRunner, against the
single-file paths. Beam is the optional extra tfstyle[beam]; CI installs it."""

import glob
import os
import sys

import numpy as np
import pytest
import soundfile
import tensorflow as tf

from tfstyle import embedding
from tfstyle.errors import InputError
from conftest import TINY_RATE, assert_one_line_usage_error, chirp, harmonic_tone, run_command

pytest.importorskip("apache_beam")
from tfstyle import pipelines  # noqa: E402  (needs apache_beam)

TWO_WORKERS = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


@pytest.fixture
def audio_folder(tmp_path):
    """Five clips (two of one length, so that they share a batch), a corrupt file and one too short to embed."""
    folder = tmp_path / "audio"
    (folder / "sub").mkdir(parents=True)
    for i, seconds in enumerate((0.5, 0.5, 0.7, 0.9)):
        soundfile.write(folder / f"clip{i}.wav", harmonic_tone(seconds, TINY_RATE, f0=110.0 + 40 * i), TINY_RATE)
    soundfile.write(folder / "sub" / "nested.flac", chirp(0.6, TINY_RATE), TINY_RATE)
    (folder / "broken.wav").write_bytes(b"RIFF....WAVEfmt nonsense")
    soundfile.write(folder / "short.wav", chirp(0.01, TINY_RATE), TINY_RATE)
    return folder


def read_records(folder) -> dict[str, dict]:
    records = {}
    for path in glob.glob(os.path.join(folder, "embeddings-*.tfrecord")):
        for serialised in tf.data.TFRecordDataset(path):
            record = embedding.from_example(serialised.numpy())
            records[record["path"]] = record
    return records


def assert_same_records(records: dict, embedder: embedding.Embedder):
    for path, record in records.items():
        alone = embedder.embed_file(path)
        assert {key: record[key] for key in ("model", "version", "signature")} == \
            {key: alone[key] for key in ("model", "version", "signature")}
        assert record["outputs"].keys() == alone["outputs"].keys()
        for name, value in alone["outputs"].items():
            np.testing.assert_allclose(record["outputs"][name], value, rtol=1e-4, atol=1e-5, err_msg=name)


def test_embed_pipeline_records_equal_the_single_file_path(exported, audio_folder, tmp_path):
    _, model_path = exported["conv_ae"]
    paths = sorted(glob.glob(str(audio_folder / "**" / "*.*"), recursive=True))
    output = tmp_path / "records"
    summary = pipelines.embed_files(paths, model_path=model_path, signature="serving_default",
                                    output_dir=str(output), beam_args=[], parquet=True, max_batch_size=4)
    records = read_records(output)
    good = {p for p in paths if "broken" not in p and "short" not in p}
    assert set(records) == good and summary.written == len(good)
    assert_same_records(records, embedding.Embedder(model_path))
    failed = (output / pipelines.FAILED_FILE).read_text().splitlines()
    assert [line.split("\t")[0] for line in failed] == sorted(p for p in paths if p not in good)
    assert "not a readable WAV file" in failed[0] and "too short" in failed[1]
    import pyarrow.parquet

    table = pyarrow.parquet.read_table(glob.glob(str(output / "embeddings-*.parquet")))
    rows = {row["path"]: row for row in table.to_pylist()}
    some = sorted(good)[0]
    name = next(iter(records[some]["outputs"]))
    np.testing.assert_allclose(np.reshape(rows[some][name], rows[some][f"{name}/shape"]),
                               records[some]["outputs"][name])
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]  # the staging folder became the output


def test_feature_maps_become_gram_statistics(exported, audio_folder, tmp_path):
    _, model_path = exported["random_cnn"]
    embedder = embedding.Embedder(model_path, "features")
    record = embedder.embed_file(str(audio_folder / "clip0.wav"))
    assert record["outputs"]["conv/gram"].shape == (16, 16)  # the tiny model's 16 filters
    with pytest.raises(InputError, match="has no signature 'decoder'"):
        embedding.Embedder(model_path, "decoder")


@pytest.mark.slow
def test_embed_command_with_two_workers(exported, audio_folder, tmp_path):
    _, model_path = exported["dilated_conv_ae"]
    output = tmp_path / "records"
    completed = run_command([sys.executable, "-m", "tfstyle.embed", f"--model={model_path}",
                             f"--input={audio_folder}/**/*.*", f"--output={output}", *TWO_WORKERS])
    assert completed.returncode == 0, completed.stderr
    assert "wrote 5 records" in completed.stderr and "2 files failed" in completed.stderr
    records = read_records(output)
    assert len(records) == 5
    assert_same_records(records, embedding.Embedder(model_path))
    again = run_command([sys.executable, "-m", "tfstyle.embed", f"--model={model_path}",
                         f"--input={audio_folder}/*.wav", f"--output={output}"])
    assert_one_line_usage_error(again, "exists and is not an empty folder")


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--input=/nonexistent/*.wav"], "no files match"),
    (["--bogus_option=1"], "unknown flag --bogus_option"),
    (["--model=not_a_model"], "no shipped SavedModel named not_a_model"),
])
def test_embed_bad_input_is_one_line(audio_folder, tmp_path, flags, message):
    completed = run_command([sys.executable, "-m", "tfstyle.embed", "--model=conv_ae",
                             f"--input={audio_folder}/*.wav", f"--output={tmp_path}/out", *flags])
    assert_one_line_usage_error(completed, message)


@pytest.mark.slow
def test_commands_say_how_to_install_beam_when_it_is_missing(tmp_path):
    hide_beam = ("import sys; sys.modules['apache_beam'] = None; from tfstyle import embed; "
                 "embed.run(['tfstyle embed', '--model=conv_ae', '--input=x', '--output=y'])")
    completed = run_command([sys.executable, "-c", hide_beam])
    assert_one_line_usage_error(completed, 'pip install "tfstyle[beam]"')


@pytest.mark.slow
def test_transfer_pairs_with_two_workers_reruns_and_failures(tmp_path):
    for name, clip in {"a.wav": chirp(0.6, TINY_RATE), "b.wav": harmonic_tone(0.5, TINY_RATE),
                       "c.wav": chirp(0.7, TINY_RATE, f0=300.0, f1=900.0)}.items():
        soundfile.write(tmp_path / name, clip, TINY_RATE)
    (tmp_path / "pairs.csv").write_text("content,style,output\na.wav,b.wav,a_as_b.wav\nc.wav,b.wav,c_as_b.wav\n"
                                        "missing.wav,b.wav,missing_as_b.wav\n")
    settings = ["--steps=3", "--griffin_lim_iters=5", "--precision=float32", "--frame_length=256",
                "--frame_step=64"]
    out = tmp_path / "out"
    pairs_run = [sys.executable, "-m", "tfstyle.transfer", f"--pairs={tmp_path / 'pairs.csv'}",
                 f"--output_dir={out}", *settings, *TWO_WORKERS]
    completed = run_command(pairs_run)
    assert completed.returncode == 2, completed.stderr
    assert "Traceback" not in completed.stderr
    assert completed.stderr.strip().splitlines()[-1].startswith("error: 1 of 3 pairs failed")
    failed = (out / "failed.tsv").read_text().splitlines()
    assert len(failed) == 1 and failed[0].startswith(f"{tmp_path / 'missing.wav'},") and "no such file" in failed[0]
    assert sorted(p for p in os.listdir(out) if not p.startswith(".")) == sorted(
        f"{stem}_as_b.{ext}" for stem in "ac" for ext in ("wav", "png", "json")) + ["failed.tsv"]

    alone = tmp_path / "alone.wav"
    single = run_command([sys.executable, "-m", "tfstyle.transfer", f"--content={tmp_path / 'a.wav'}",
                          f"--style={tmp_path / 'b.wav'}", f"--output={alone}", *settings])
    assert single.returncode == 0, single.stderr
    np.testing.assert_allclose(soundfile.read(out / "a_as_b.wav")[0], soundfile.read(alone)[0], atol=2 / 32768)

    (tmp_path / "missing.wav").write_bytes((tmp_path / "c.wav").read_bytes())
    rerun = run_command(pairs_run)
    assert rerun.returncode == 0, rerun.stderr
    assert "3 pairs in" in rerun.stderr and "2 done already, 1 to run" in rerun.stderr
    assert (out / "missing_as_b.wav").exists() and not (out / "failed.tsv").exists()


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--output_dir=somewhere"], "--pairs and --output_dir go together"),
    (["--pairs=p.csv", "--output_dir=o", "--content=x.wav"], "--pairs takes the files from its CSV: drop --content"),
    (["--content=a.wav", "--style=b.wav", "--output=o.wav", "--runner=DirectRunner"],
     "unknown flag --runner (Beam pipeline options go with --pairs)"),
])
def test_pairs_flag_errors_are_one_line(flags, message):
    completed = run_command([sys.executable, "-m", "tfstyle.transfer", *flags])
    assert_one_line_usage_error(completed, message)


def test_pairs_csv_is_checked_before_any_work(tmp_path):
    bad = tmp_path / "pairs.csv"
    bad.write_text("content,style\na.wav,b.wav\n")
    with pytest.raises(InputError, match="needs a header row with the columns content,style,output"):
        pipelines.read_pairs(str(bad))
    bad.write_text("content,style,output\na.wav,b.wav,out.mp3\n")
    with pytest.raises(InputError, match="output must be a .wav file name"):
        pipelines.read_pairs(str(bad))
    bad.write_text("content,style,output\na.wav,b.wav,o.wav\nc.wav,d.wav,o.wav\n")
    with pytest.raises(InputError, match="two rows write the same output"):
        pipelines.read_pairs(str(bad))
    bad.write_text("content,style,output\na.wav,b.wav,o.wav\n")
    assert pipelines.read_pairs(str(bad)) == [pipelines.Pair(str(tmp_path / "a.wav"), str(tmp_path / "b.wav"),
                                                             "o.wav")]
