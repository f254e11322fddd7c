"""Audio features for lip-sync, exactly as SyncTalk_2D / Wav2Lip compute them.

Mel: 16 kHz, pre-emphasis 0.97, STFT n_fft 800 / hop 200 / win 800 (80 mel frames per second),
80 mel bands 55-7600 Hz, dB with a -100 dB floor and 20 dB reference, normalised to [-4, 4].
Encoder window ``j`` at ``fps`` reads the 16 mel frames starting at ``int(80 * j / fps)``; which windows a video
frame's audio context holds, how many frames a clip of speech gives and how the ends are padded is the model's
:class:`~motionlab.models.lipsync.LipSyncConvention` (:func:`frame_context`, one function for training and inference).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from motionlab.models.lipsync import AUDIO_SHAPES, LipSyncConvention
from motionlab.utils.errors import MotionlabError

SAMPLE_RATE = 16000
MEL_FRAMES_PER_SECOND = 80.0
MEL_WINDOW = 16
CONTEXT = 16  # per-frame features of frames [i - 8, i + 8)


class AudioError(MotionlabError, RuntimeError):
    """Audio that cannot be used, with the file named."""


def load_wav(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` (resampled when needed); unreadable or empty audio is an error.

    The samples are librosa.load's: a file soundfile reads at ``sample_rate`` is read and averaged to mono here (librosa
    and the scipy.signal / numba it pulls in take 1-2 s to import, most of a lip-sync command's start-up); anything
    else (another rate, a format only audioread decodes) goes through librosa.load itself."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio {path} does not exist")
    if path.stat().st_size == 0:
        raise AudioError(f"audio {path} is empty (0 bytes)")
    _check_duration(path, _declared_seconds(path))
    try:
        wav = _read_at_rate(path, sample_rate)
        if wav is None:
            import librosa

            wav, _ = librosa.load(str(path), sr=sample_rate, mono=True)
    except Exception as error:  # soundfile / audioread raise many types for bad files
        raise AudioError(f"audio {path} cannot be decoded ({error}); convert it to a 16 kHz mono WAV") from error
    if wav.size == 0:
        raise AudioError(f"audio {path} holds no samples")
    _check_duration(path, wav.size / sample_rate)
    return wav.astype(np.float32)


def _read_at_rate(path: Path, sample_rate: int) -> np.ndarray | None:
    """librosa.load's samples of a file soundfile reads at ``sample_rate`` (float32, channels averaged as its
    ``to_mono`` does), or None for a file that needs resampling or another decoder."""
    import soundfile

    try:
        if soundfile.info(str(path)).samplerate != sample_rate:
            return None
    except Exception:  # not a format soundfile reads
        return None
    data, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    return data[:, 0] if data.shape[1] == 1 else np.mean(data.T, axis=0)


def _declared_seconds(path: Path) -> float | None:
    """The length a file's header states (formats soundfile reads), or None."""
    import soundfile

    try:
        return float(soundfile.info(str(path)).duration)
    except Exception:  # not a format soundfile reads: the decoded length is checked instead
        return None


def _check_duration(path: Path, seconds: float | None) -> None:
    from motionlab.data.video_io import input_limits

    limit = input_limits().max_audio_seconds
    if seconds is not None and seconds > limit:
        raise AudioError(f"audio {path} lasts {seconds:.0f} s, over limits.max_audio_seconds={limit}; cut it, or raise the limit with "
                         f"limits.max_audio_seconds={int(seconds) + 1}")


N_FFT, HOP = 800, 200


@functools.cache
def _hann_window(size: int) -> np.ndarray:
    """scipy.signal.get_window("hann", size) (periodic), computed as scipy does: a symmetric window one longer,
    truncated."""
    angles = np.linspace(-np.pi, np.pi, size + 1)
    window = np.zeros(size + 1)
    for k, weight in enumerate((0.5, 0.5)):
        window += weight * np.cos(k * angles)
    return window[:-1]


# Slaney's mel scale as librosa writes it: linear (200 / 3 Hz a mel) below 1 kHz, logarithmic above
_MEL_STEP, _LOG_HZ = 200.0 / 3, 1000.0
_LOG_MEL, _LOG_STEP = _LOG_HZ / _MEL_STEP, np.log(6.4) / 27.0


def _slaney_mel(hz: np.ndarray) -> np.ndarray:
    """librosa.hz_to_mel(hz) (htk=False)."""
    hz = np.atleast_1d(np.asarray(hz, dtype=np.float64))
    mels = hz / _MEL_STEP
    above = hz >= _LOG_HZ
    mels[above] = _LOG_MEL + np.log(hz[above] / _LOG_HZ) / _LOG_STEP
    return mels


def _slaney_hz(mels: np.ndarray) -> np.ndarray:
    """librosa.mel_to_hz(mels) (htk=False)."""
    hz = _MEL_STEP * mels
    above = mels >= _LOG_MEL
    hz[above] = _LOG_HZ * np.exp(_LOG_STEP * (mels[above] - _LOG_MEL))
    return hz


@functools.cache
def _mel_filterbank(n_mels: int = 80, fmin: float = 55.0, fmax: float = 7600.0) -> np.ndarray:
    """librosa.filters.mel(sr=16000, n_fft=800, ...): (n_mels, 401) float32 triangles on Slaney's scale, area-normalised."""
    frequencies = np.fft.rfftfreq(n=N_FFT, d=1.0 / SAMPLE_RATE)
    edges = _slaney_hz(np.linspace(_slaney_mel(fmin)[0], _slaney_mel(fmax)[0], n_mels + 2))
    widths = np.diff(edges)
    ramps = np.subtract.outer(edges, frequencies)
    weights = np.zeros((n_mels, len(frequencies)), dtype=np.float32)
    for i in range(n_mels):
        weights[i] = np.maximum(0, np.minimum(-ramps[i] / widths[i], ramps[i + 2] / widths[i + 1]))
    weights *= (2.0 / (edges[2 : n_mels + 2] - edges[:n_mels]))[:, np.newaxis]  # in place, as librosa rounds it
    return weights


def _stft_magnitude(signal: np.ndarray) -> np.ndarray:
    """|librosa.stft(signal, n_fft=800, hop_length=200)|: centred (400 zeros each side), periodic Hann, (401, frames)."""
    padded = np.pad(signal, N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP]
    return np.abs(np.fft.rfft(_hann_window(N_FFT) * frames, axis=-1)).T


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """(T_mel, 80) normalised log-mel frames of 16 kHz ``wav``: SyncTalk_2D's / Wav2Lip's ``audio.melspectrogram``
    (scipy's pre-emphasis filter, librosa's STFT and Slaney mel bank), written in numpy: equal to theirs
    (tests/data/test_audio.py), without importing librosa and scipy.signal (1-2 s)."""
    wav = np.asarray(wav, dtype=np.float64)
    # scipy.signal.lfilter([1, -0.97], [1], wav): y[n] = x[n] - 0.97 x[n - 1], from rest
    emphasised = np.concatenate([wav[:1], wav[1:] + (-0.97 * wav[:-1])])
    mel = _mel_filterbank() @ _stft_magnitude(emphasised)
    decibels = 20 * np.log10(np.maximum(1e-5, mel)) - 20.0
    return np.clip(8.0 * ((decibels + 100.0) / 100.0) - 4.0, -4.0, 4.0).T.astype(np.float32)


def syncnet_mfcc(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(13, N) MFCCs as SyncNet's evaluation computes them (``python_speech_features.mfcc`` with its defaults on the
    16-bit PCM samples: pre-emphasis 0.97, 25 ms rectangular frames every 10 ms, zero-padded, 512-point power
    spectrum, 26 mel filters, log, orthonormal DCT-II, 13 coefficients liftered by 22, the first replaced by the
    log frame energy). ``wav``: float samples in [-1, 1], scaled to int16 as ``ffmpeg -acodec pcm_s16le`` writes them."""
    import decimal

    from scipy.fft import dct

    def half_up(value: float) -> int:
        return int(decimal.Decimal(value).quantize(decimal.Decimal("1"), rounding=decimal.ROUND_HALF_UP))

    pcm = np.clip(np.round(np.asarray(wav, np.float64) * 32768.0), -32768, 32767)
    signal = np.append(pcm[0], pcm[1:] - 0.97 * pcm[:-1])
    length, step, nfft = half_up(0.025 * sample_rate), half_up(0.01 * sample_rate), 512
    count = 1 if len(signal) <= length else 1 + int(np.ceil((len(signal) - length) / step))
    padded = np.concatenate([signal, np.zeros((count - 1) * step + length - len(signal))])
    frames = padded[np.arange(length)[None, :] + step * np.arange(count)[:, None]]
    power = np.square(np.abs(np.fft.rfft(frames, nfft))) / nfft
    energy = power.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    mel = np.linspace(0.0, 2595 * np.log10(1 + (sample_rate / 2) / 700.0), 26 + 2)
    bins = np.floor((nfft + 1) * (700 * (10 ** (mel / 2595.0) - 1)) / sample_rate)
    bank = np.zeros((26, nfft // 2 + 1))
    for j in range(26):
        for i in range(int(bins[j]), int(bins[j + 1])):
            bank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            bank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    filtered = power @ bank.T
    filtered = np.where(filtered == 0, np.finfo(float).eps, filtered)
    cepstra = dct(np.log(filtered), type=2, axis=1, norm="ortho")[:, :13]
    cepstra *= 1 + 11.0 * np.sin(np.pi * np.arange(13) / 22)
    cepstra[:, 0] = np.log(energy)
    return cepstra.T


def mel_window_start(frame_index: int, mel_frames: int, fps: float = 25.0) -> int:
    """First mel frame of encoder window ``frame_index``'s 16 frames (shifted back at the end)."""
    start = int(MEL_FRAMES_PER_SECOND * (frame_index / float(fps)))
    return max(0, min(start, mel_frames - MEL_WINDOW))


def mel_windows(mel: np.ndarray, num_frames: int, fps: float = 25.0) -> torch.Tensor:
    """(N, 1, 80, 16) mel windows 0 .. N-1, window ``j`` starting at time ``j / fps``."""
    if mel.shape[0] < MEL_WINDOW:
        raise AudioError(f"audio too short: {mel.shape[0]} mel frames, at least {MEL_WINDOW} (0.2 s) needed")
    starts = [mel_window_start(i, mel.shape[0], fps) for i in range(num_frames)]
    return torch.from_numpy(np.stack([mel[s : s + MEL_WINDOW].T for s in starts])).unsqueeze(1)


def encoder_window_count(num_samples: int, convention: LipSyncConvention, fps: float = 25.0) -> int:
    """How many mel windows the audio encoder reads for ``num_samples`` of 16 kHz speech: one per output frame
    (``round(seconds * fps)``), or SyncTalk_2D's audio dataset length ``int((mel_frames - 16) / 80 * fps) + 2``."""
    if convention.frame_count == "duration":
        return max(1, int(round(num_samples / SAMPLE_RATE * fps)))
    mel_frames = 1 + num_samples // 200  # the centred STFT's frame count (hop 200)
    if mel_frames < MEL_WINDOW:
        raise AudioError(f"audio too short: {mel_frames} mel frames, at least {MEL_WINDOW} (0.2 s) needed")
    return int((mel_frames - MEL_WINDOW) / MEL_FRAMES_PER_SECOND * fps) + 2


def frame_count(num_samples: int, convention: LipSyncConvention, fps: float = 25.0) -> int:
    """Output video frames for ``num_samples`` of 16 kHz speech: the feature rows (:func:`per_frame_features`)."""
    return encoder_window_count(num_samples, convention, fps) + 2 * convention.feature_edge_rows


def per_frame_features(encoder_outputs: torch.Tensor, convention: LipSyncConvention) -> torch.Tensor:
    """The feature rows the U-Net's contexts index: the encoder outputs with the convention's copies of the first and
    last output around them (what a SyncTalk_2D ``aud_ave.npy`` holds)."""
    pad = convention.feature_edge_rows
    if pad == 0:
        return encoder_outputs
    return torch.cat([encoder_outputs[:1].expand(pad, *encoder_outputs.shape[1:]), encoder_outputs,
                      encoder_outputs[-1:].expand(pad, *encoder_outputs.shape[1:])])


def frame_context(features: torch.Tensor, index: int, convention: LipSyncConvention, width: int = CONTEXT) -> torch.Tensor:
    """Rows ``[index - width/2, index + width/2)`` of (N, D...) per-frame ``features``: video frame ``index``'s audio
    context, the same function for training and inference. Rows outside ``[0, N)`` repeat the end rows
    (``edge``) or are zero (``zeros``), as the convention says."""
    half = width // 2
    positions = torch.arange(index - half, index + half)
    context = features[positions.clamp(0, features.shape[0] - 1)]
    if convention.context_padding == "zeros":
        outside = (positions < 0) | (positions >= features.shape[0])
        context = context.masked_fill(outside.view(-1, *([1] * (features.dim() - 1))), 0.0)
    return context


def audio_input(features: torch.Tensor, index: int, mode: str, convention: LipSyncConvention) -> torch.Tensor:
    """The U-Net's audio input for video frame ``index``: the frame's context reshaped to the mode's shape."""
    expected = AUDIO_SHAPES[mode]
    context = frame_context(features, index, convention)
    if context.numel() != int(np.prod(expected)):
        raise AudioError(
            f"{mode} features of shape {tuple(features.shape[1:])} per frame give {context.numel()} values for 16 frames of context; "
            f"the U-Net expects {expected} ({int(np.prod(expected)) // CONTEXT} values per frame)"
        )
    return context.reshape(expected)
