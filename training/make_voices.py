"""Synthesises the corpus's 15 sentences in many more voices, for training and measuring speaker_encoder.

    apt-get install espeak-ng festival sox festvox-czech-dita festvox-czech-krb festvox-czech-machac \
        festvox-czech-ph festvox-suopuhe-lj festvox-suopuhe-mv festvox-italp16k festvox-itapc16k festvox-ru \
        festvox-ca-ona-hts
    python training/make_voices.py --corpus=PATH/TO/corpus --output=voices

writes voices/train/<voice>/h01.wav ... h15.wav (16 kHz mono): every English variant of espeak-ng (formant
synthesis, no real speaker behind them) and seven festival voices recorded from real people, and voices/measure/
with three more real people's festival voices and the corpus's own seven speakers, none of whom is in train/ (nor
are the variants behind the corpus's espeak voices). Takes about 6 minutes on 2 cores.

With --extra_sentences=training/content_sentences.txt the training voices also read those sentences, into
voices/content/<voice>/c01.wav ... (about 13 minutes more): content_encoder trains on them, so that it is measured
on sentences it never heard, in voices it never heard.
"""

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile

# Festival voices of real people (diphone or HTS recordings), reading the English text with their own rules.
TRAIN_FESTIVAL = ("czech_krb", "czech_machac", "czech_ph", "upc_ca_ona_hts", "suo_fi_lj_diphone", "lp_diphone",
                  "msu_ru_nsh_clunits")
MEASURE_FESTIVAL = ("czech_dita", "pc_diphone", "hy_fi_mv_diphone")
ESPEAK_ACCENTS = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029")
ESPEAK_MEASURED = ("f2", "m3")  # the corpus's espeak_us_f2 and espeak_gb_m3: measured, so never trained on
ESPEAK_VARIANTS_DIR = "/usr/lib/x86_64-linux-gnu/espeak-ng-data/voices/!v"


def synthesise(engine: str, voice: str, text: str, path: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        raw = os.path.join(folder, "raw.wav")
        if engine == "festival":
            text_path = os.path.join(folder, "text.txt")
            with open(text_path, "w") as f:
                f.write(text)
            subprocess.run(["text2wave", "-eval", f"(voice_{voice})", text_path, "-o", raw], check=True,
                           capture_output=True)
        else:
            subprocess.run(["espeak-ng", "-v", voice, "-w", raw, text], check=True, capture_output=True)
        subprocess.run(["sox", raw, "-r", "16000", "-c", "1", "-b", "16", path, "norm", "-3"], check=True,
                       capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="the project's audio corpus (with speech_manifest.csv)")
    parser.add_argument("--output", required=True, help="folder for train/ and measure/")
    parser.add_argument("--extra_sentences", help="a text file of more sentences (one per line, # comments) that "
                        "the training voices read into OUTPUT/content/<voice>/c01.wav, c02.wav, ...")
    args = parser.parse_args()
    with open(os.path.join(args.corpus, "speech_manifest.csv")) as f:
        sentences = {row["sentence_id"]: row["text"] for row in csv.DictReader(f)}
    extra = {}
    if args.extra_sentences:
        with open(args.extra_sentences) as f:
            lines = [line.strip() for line in f if line.strip() and not line.startswith("#")]
        extra = {f"c{i + 1:02d}": text for i, text in enumerate(lines)}
    variants = sorted(v for v in os.listdir(ESPEAK_VARIANTS_DIR) if v not in ESPEAK_MEASURED and " " not in v)
    jobs = [("train", f"fest_{v}", "festival", v) for v in TRAIN_FESTIVAL]
    jobs += [("measure", f"fest_{v}", "festival", v) for v in MEASURE_FESTIVAL]
    jobs += [("train", f"espeak_{ESPEAK_ACCENTS[i % len(ESPEAK_ACCENTS)]}_{v}", "espeak",
              f"{ESPEAK_ACCENTS[i % len(ESPEAK_ACCENTS)]}+{v}") for i, v in enumerate(variants)]
    made = {"train": 0, "measure": 0}
    for split, name, engine, voice in jobs:
        folder = os.path.join(args.output, split, name)
        os.makedirs(folder, exist_ok=True)
        try:
            for sentence, text in sentences.items():
                path = os.path.join(folder, f"{sentence}.wav")
                if not os.path.exists(path):
                    synthesise(engine, voice, text, path)
            if split == "train" and extra:
                content_folder = os.path.join(args.output, "content", name)
                os.makedirs(content_folder, exist_ok=True)
                for sentence, text in extra.items():
                    path = os.path.join(content_folder, f"{sentence}.wav")
                    if not os.path.exists(path):
                        synthesise(engine, voice, text, path)
            made[split] += 1
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            print(f"skipping {name}: {e}", file=sys.stderr)
            shutil.rmtree(folder)
            shutil.rmtree(os.path.join(args.output, "content", name), ignore_errors=True)
    for speaker in sorted(os.listdir(os.path.join(args.corpus, "speech"))):
        target = os.path.join(args.output, "measure", speaker)
        if not os.path.exists(target):
            shutil.copytree(os.path.join(args.corpus, "speech", speaker), target)
        made["measure"] += 1
    print(f"{made['train']} voices in {args.output}/train, {made['measure']} in {args.output}/measure")


if __name__ == "__main__":
    main()
