"""Audio features against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch

from motionlab.data.audio import (
    AudioError,
    audio_input,
    frame_context,
    frame_count,
    load_wav,
    mel_window_start,
    mel_windows,
    melspectrogram,
    per_frame_features,
)
from motionlab.models.lipsync import CONVENTIONS


def test_mel_frame_count_range_and_peak_band():
    t = np.arange(16000) / 16000.0
    wav = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)
    mel = melspectrogram(wav)
    assert mel.shape == (81, 80)  # 1 + 16000 / 200 frames (centred STFT)
    assert mel.min() >= -4.0 and mel.max() <= 4.0
    import librosa

    centres = librosa.mel_frequencies(n_mels=82, fmin=55, fmax=7600)[1:-1]
    assert abs(centres[mel[40].argmax()] - 1000.0) < 60.0  # the 1 kHz tone lands in the band around 1 kHz
    assert np.allclose(melspectrogram(np.zeros(8000, np.float32)), -4.0)  # silence is the floor


def test_window_indices_hand_computed():
    assert [mel_window_start(i, 1000) for i in range(6)] == [0, 3, 6, 9, 12, 16]  # int(80 * i / 25)
    assert mel_window_start(100, 200) == 184  # shifted back to stay inside the clip
    mel = np.arange(40 * 80, dtype=np.float32).reshape(40, 80)
    windows = mel_windows(mel, 3)
    assert windows.shape == (3, 1, 80, 16)
    assert torch.equal(windows[1, 0, :, 0], torch.from_numpy(mel[3]))


MOTIONLAB, SYNCTALK = CONVENTIONS["motionlab"], CONVENTIONS["synctalk_2d"]


def test_context_edge_padding_and_reshape():
    features = torch.arange(20, dtype=torch.float32).view(20, 1).expand(20, 512)
    context = frame_context(features, 2, MOTIONLAB)
    assert context[:, 0].tolist() == [0] * 7 + list(range(1, 10))  # frames -6..9, clamped at 0
    assert frame_context(features, 19, MOTIONLAB)[:, 0].tolist() == list(range(11, 20)) + [19] * 7
    assert audio_input(features, 5, "ave", MOTIONLAB).shape == (32, 16, 16)
    with pytest.raises(AudioError, match=r"expects \(32, 32, 32\)"):
        audio_input(features, 5, "hubert", MOTIONLAB)


def test_synctalk_context_hand_computed():
    """Encoder outputs o_0 .. o_19 (value k + 1 for o_k): SyncTalk_2D pads them to [o_0, o_0 .. o_19, o_19] (22 rows,
    22 frames) and gives frame i the rows [i - 8, i + 8), zeros outside; so frame i is centred on o_(i - 1)."""
    outputs = (torch.arange(20, dtype=torch.float32) + 1).view(20, 1).expand(20, 512)
    rows = per_frame_features(outputs, SYNCTALK)
    assert rows[:, 0].tolist() == [1] + list(range(1, 21)) + [20]
    assert frame_context(rows, 0, SYNCTALK)[:, 0].tolist() == [0] * 8 + [1, 1, 2, 3, 4, 5, 6, 7]
    assert frame_context(rows, 10, SYNCTALK)[:, 0].tolist() == list(range(2, 18))  # rows 2..17 = o_1 .. o_16
    assert frame_context(rows, 21, SYNCTALK)[:, 0].tolist() == [13, 14, 15, 16, 17, 18, 19, 20, 20] + [0] * 7
    # motionlab centres frame i on o_i: SyncTalk_2D's frame i + 1 context, one frame (40 ms) apart, except at the ends
    assert frame_context(outputs, 9, MOTIONLAB)[:, 0].tolist() == frame_context(rows, 10, SYNCTALK)[:, 0].tolist()
    assert audio_input(rows, 0, "ave", SYNCTALK)[:8].abs().sum() == 0


def test_frame_count_rules():
    # SyncTalk_2D: int((mel_frames - 16) / 80 * 25) + 2 encoder windows, plus its two padding rows
    for seconds, mel_frames, expected in ((6.0, 481, 149), (1.0, 81, 24), (2.5, 201, 61), (0.25, 21, 5)):
        samples = int(seconds * 16000)
        assert 1 + samples // 200 == mel_frames == melspectrogram(np.zeros(samples, np.float32)).shape[0]
        assert frame_count(samples, SYNCTALK) == expected == int((mel_frames - 16) / 80 * 25) + 4
    assert frame_count(96000, MOTIONLAB) == 150 and frame_count(96000 + 300, MOTIONLAB) == 150  # round(seconds * 25)
    with pytest.raises(AudioError, match="too short"):
        frame_count(2000, SYNCTALK)


def test_unreadable_audio_is_an_error(tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....not audio")
    with pytest.raises(AudioError, match="bad.wav"):
        load_wav(bad)
    with pytest.raises(AudioError, match="does not exist"):
        load_wav(tmp_path / "missing.wav")
    good = tmp_path / "tone.wav"
    soundfile.write(good, np.zeros(44100, np.float32), 44100)
    assert load_wav(good).shape == (16000,)  # resampled to 16 kHz


def test_audio_of_any_rate_channels_and_format_reads_as_16k_mono(tmp_path):
    """8 kHz stereo WAV, 48 kHz WAV and MP3 (PyAV's encoder) all decode to 16 kHz mono of the same length; silence reads."""
    import av

    t = np.arange(8000) / 8000.0
    tone = 0.4 * np.sin(2 * np.pi * 300.0 * t)
    soundfile.write(tmp_path / "stereo8k.wav", np.stack([tone, tone], axis=1).astype(np.float32), 8000)
    soundfile.write(tmp_path / "tone48k.wav", 0.4 * np.sin(2 * np.pi * 300.0 * np.arange(48000) / 48000.0).astype(np.float32), 48000)
    soundfile.write(tmp_path / "silence.wav", np.zeros(16000, np.float32), 16000)
    with av.open(str(tmp_path / "tone.mp3"), "w") as container:
        stream = container.add_stream("libmp3lame", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(tone.astype(np.float32).repeat(2)[None], format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    for name in ("stereo8k.wav", "tone48k.wav", "tone.mp3"):
        wav = load_wav(tmp_path / name)
        assert wav.dtype == np.float32 and abs(len(wav) - 16000) <= 1200 and 0.2 < np.abs(wav).max() < 0.6, name
    assert np.abs(load_wav(tmp_path / "silence.wav")).max() == 0


def test_audio_longer_than_the_limit_is_refused_before_decoding(tmp_path):
    """limits.max_audio_seconds: a WAV whose header says it is longer is refused naming the file, its length and the
    override; within the limit it loads."""
    from motionlab.data.audio import AudioError, load_wav
    from motionlab.data.video_io import InputLimits, limited

    soundfile.write(str(tmp_path / "speech.wav"), np.zeros(16000 * 3, np.float32), 16000)
    with limited(InputLimits(max_audio_seconds=2)):
        with pytest.raises(AudioError, match=r"speech.wav lasts 3 s, over limits.max_audio_seconds=2; .* limits.max_audio_seconds=4"):
            load_wav(tmp_path / "speech.wav")
    assert len(load_wav(tmp_path / "speech.wav")) == 16000 * 3


def test_mel_and_wav_reading_equal_librosa_and_scipy(tmp_path):
    """melspectrogram (numpy) is SyncTalk_2D's / Wav2Lip's ``audio.melspectrogram`` (scipy.signal.lfilter pre-emphasis,
    librosa.stft, librosa.filters.mel) to the bit, at lengths that do and do not fill the last hop; load_wav gives
    librosa.load's samples for mono and stereo 16 kHz files and resamples a 44.1 kHz one as librosa does."""
    import librosa
    from scipy import signal

    def reference(wav: np.ndarray) -> np.ndarray:
        spectrum = np.abs(librosa.stft(y=signal.lfilter([1, -0.97], [1], wav), n_fft=800, hop_length=200, win_length=800))
        mel = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600) @ spectrum
        return np.clip(8.0 * ((20 * np.log10(np.maximum(1e-5, mel)) - 20.0 + 100.0) / 100.0) - 4.0, -4.0, 4.0).T.astype(np.float32)

    rng = np.random.default_rng(0)
    for length in (16000, 16037, 3201):
        wav = (0.3 * rng.standard_normal(length) + 0.2 * np.sin(np.arange(length) / 7.0)).astype(np.float32)
        assert np.array_equal(melspectrogram(wav), reference(wav)), length
    stereo = (0.2 * rng.standard_normal((8000, 2))).astype(np.float32)
    for name, data, rate in (("mono.wav", stereo[:, 0], 16000), ("stereo.wav", stereo, 16000), ("cd.wav", stereo, 44100)):
        soundfile.write(tmp_path / name, data, rate, subtype="FLOAT")
        expected, _ = librosa.load(str(tmp_path / name), sr=16000, mono=True)
        assert np.array_equal(load_wav(tmp_path / name), expected), name
