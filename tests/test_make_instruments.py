"""training/make_instruments.py: the MIDI it writes is well formed and plays the melody it was given."""

import importlib.util
import os
import random
import shutil
import struct

import pytest
import soundfile

from conftest import REPO

_spec = importlib.util.spec_from_file_location("make_instruments",
                                               os.path.join(REPO, "training", "make_instruments.py"))
make_instruments = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_instruments)


def read_midi(data: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """(ticks per beat, [(absolute tick, event bytes)]) of a one-track MIDI file as midi_file writes them."""
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, make_instruments.TICKS_PER_BEAT)
    assert data[14:18] == b"MTrk"
    (length,) = struct.unpack(">I", data[18:22])
    track, events, tick, i = data[22:], [], 0, 0
    assert len(track) == length
    while i < len(track):
        delta = 0
        while True:  # variable-length delta time
            byte = track[i]
            i += 1
            delta = (delta << 7) | (byte & 0x7F)
            if byte < 0x80:
                break
        tick += delta
        if track[i] == 0xFF:  # meta: type, length, data
            size = track[i + 2]
            events.append((tick, track[i:i + 3 + size]))
            i += 3 + size
        else:
            size = 2 if track[i] >> 4 == 0xC else 3
            events.append((tick, track[i:i + size]))
            i += size
    return make_instruments.TICKS_PER_BEAT, events


def test_midi_file_plays_the_melody_on_the_program():
    notes = [(60, 0.5), (62, 1.0), (64, 2.0), (72, 1.5)]
    ticks_per_beat, events = read_midi(make_instruments.midi_file(notes, program=40, tempo_bpm=120.0))
    assert events[0][1] == b"\xff\x51\x03" + struct.pack(">I", 500_000)[1:]  # 120 BPM
    assert events[1][1] == bytes((0xC0, 40))
    ons = [(tick, event[1]) for tick, event in events if event[0] == 0x90]
    offs = [(tick, event[1]) for tick, event in events if event[0] == 0x80]
    assert [note for _, note in ons] == [note for note, _ in notes] == [note for _, note in offs]
    lengths = [(off - on) / ticks_per_beat for (on, _), (off, _) in zip(ons, offs)]
    assert lengths == [beats for _, beats in notes]
    assert events[-1][1] == b"\xff\x2f\x00"


def test_random_melodies_last_long_enough_in_a_playable_range():
    rng = random.Random(0)
    notes = make_instruments.random_melody(rng, seconds=6.0, tempo_bpm=100.0)
    assert sum(beats for _, beats in notes) * 60 / 100 >= 6.0
    assert all(36 <= note <= 90 for note, _ in notes)
    assert len({note for note, _ in notes}) > 3


@pytest.mark.skipif(not (shutil.which("fluidsynth") and shutil.which("sox")
                         and os.path.exists(make_instruments.SOUNDFONT)),
                    reason="needs fluidsynth, sox and fluid-soundfont-gm (training only)")
def test_render_writes_mono_audio_at_the_rate(tmp_path):
    path = str(tmp_path / "t.wav")
    make_instruments.render(make_instruments.midi_file([(60, 1.0), (67, 1.0)], 0, 120.0), path)
    audio, rate = soundfile.read(path)
    assert rate == make_instruments.SAMPLE_RATE and audio.ndim == 1
    assert 0.9 < len(audio) / rate < 3.0 and abs(audio).max() > 0.5
