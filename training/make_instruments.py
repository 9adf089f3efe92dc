"""Renders the same random melodies on many General MIDI instruments, for training and measuring timbre_encoder.

    apt-get install fluidsynth fluid-soundfont-gm sox
    python training/make_instruments.py --output=instruments

writes instruments/train/<program>/t01.wav ... (22.05 kHz mono, one folder per General MIDI program) and
instruments/measure/ with programs never in train/: the corpus's four (piano 0, nylon guitar 24, violin 40,
trumpet 56) and one from each of six other families. Every instrument plays the same melodies, as the corpus's
do, so an instrument has to be told apart by its timbre and not by its tune. The sound-effect programs (120-127)
are left out. Takes about 3 minutes on 2 cores.
"""

import argparse
import concurrent.futures
import os
import random
import struct
import subprocess
import tempfile

SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
SAMPLE_RATE = 22050
# The corpus's instruments, then one per family: organ, bass, ensemble, reed, pipe, synth lead.
MEASURE_PROGRAMS = (0, 24, 40, 56, 19, 33, 48, 65, 73, 81)
PROGRAMS = range(120)
TICKS_PER_BEAT = 480
MAJOR_SCALE = (0, 2, 4, 5, 7, 9, 11)


def random_melody(rng: random.Random, seconds: float, tempo_bpm: float) -> list[tuple[int, float]]:
    """(MIDI note, beats) pairs: a stepwise walk over a major scale around middle C, lasting `seconds`."""
    tonic = rng.choice(range(55, 67))
    degree, beats, notes = 7, 0.0, []
    while beats * 60.0 / tempo_bpm < seconds:
        degree = max(0, min(14, degree + rng.choice((-2, -1, -1, 0, 1, 1, 2, 3, -3))))
        note = tonic + 12 * (degree // 7) + MAJOR_SCALE[degree % 7] - 12
        length = rng.choice((0.5, 0.5, 1.0, 1.0, 1.5, 2.0))
        notes.append((note, length))
        beats += length
    return notes


def _variable_length(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def midi_file(notes: list[tuple[int, float]], program: int, tempo_bpm: float) -> bytes:
    """A one-track standard MIDI file playing `notes` on `program` (channel 0)."""
    events = b"\x00\xff\x51\x03" + struct.pack(">I", round(60_000_000 / tempo_bpm))[1:]  # tempo
    events += b"\x00" + bytes((0xC0, program))
    for note, beats in notes:
        ticks = round(beats * TICKS_PER_BEAT)
        events += b"\x00" + bytes((0x90, note, 96))
        events += _variable_length(ticks) + bytes((0x80, note, 0))
    events += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_BEAT)
    return header + b"MTrk" + struct.pack(">I", len(events)) + events


def render(midi: bytes, path: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        midi_path, raw = os.path.join(folder, "tune.mid"), os.path.join(folder, "raw.wav")
        with open(midi_path, "wb") as f:
            f.write(midi)
        subprocess.run(["fluidsynth", "-ni", "-q", "-g", "0.6", "-r", str(SAMPLE_RATE), "-F", raw, SOUNDFONT,
                        midi_path], check=True, capture_output=True)
        # Mono, normalised, and the reverb tail after the last note trimmed to half a second.
        # (remix first: sox applies an output option such as -c 1 after the effects, which would halve the peak)
        subprocess.run(["sox", raw, "-b", "16", path, "remix", "-", "norm", "-3", "reverse", "silence", "1", "0.05",
                        "-60d", "reverse", "pad", "0", "0.5"], check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder for train/ and measure/")
    parser.add_argument("--melodies", type=int, default=12, help="random melodies every instrument plays")
    parser.add_argument("--seconds", type=float, default=6.0, help="length of each melody")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tunes = [(random_melody(rng, args.seconds, tempo), tempo)
             for tempo in (rng.uniform(80, 140) for _ in range(args.melodies))]
    jobs = []
    for program in PROGRAMS:
        split = "measure" if program in MEASURE_PROGRAMS else "train"
        folder = os.path.join(args.output, split, f"gm{program:03d}")
        os.makedirs(folder, exist_ok=True)
        jobs += [(midi_file(notes, program, tempo), os.path.join(folder, f"t{index + 1:02d}.wav"))
                 for index, (notes, tempo) in enumerate(tunes)]
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count()) as pool:  # each render is its own process
        list(pool.map(lambda job: render(*job), jobs))  # list(): a failed render raises here
    print(f"{len(PROGRAMS) - len(MEASURE_PROGRAMS)} training and {len(MEASURE_PROGRAMS)} measuring instruments, "
          f"{len(tunes)} melodies each, in {args.output}")


if __name__ == "__main__":
    main()
