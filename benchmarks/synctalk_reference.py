"""SyncTalk_2D's own inference, step for step, as the reference motionlab's ``synctalk_2d`` convention must reproduce.

Written from SyncTalk_2D's ``inference_328.py``, ``utils.py`` (``AudDataset``, ``get_audio_features``) and
``data_utils/ave`` (the ``aud_ave.npy`` writer), independently of motionlab's pipeline, so the benchmark and the
fidelity test compare two implementations:

- features: the ``ave`` encoder over ``AudDataset``'s ``int((mel_frames - 16) / 80 * 25) + 2`` mel windows in batches
  of 64, one copy of the first and of the last output around them; frame ``i`` reads rows ``[i - 8, i + 8)``, zeros
  outside; one output frame per feature row.
- frames: ``cv2.imread`` (BGR), the template index stepping 1, 2, ..., n-1, n-2, ..., 0, 1, ...; the crop box cut by
  slicing (clipped at the frame), ``cv2.resize`` to 328 with cubic interpolation, the inner 320 and its copy with
  ``cv2.rectangle(.., (5, 5, 310, 305), black, filled)``, the U-Net at batch 1, its output ``* 255`` cast to uint8
  (truncation), put back into the 328 crop, cubic resize to the box, pasted; MJPG ``.avi`` muxed with the wav.

One thing is motionlab's: the crop box comes from :func:`motionlab.data.talking.crop_box`, since a 68-point
template has no SyncTalk_2D point 52 (for 110-point ``.lms`` files the box is SyncTalk_2D's own).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from motionlab.data.talking import crop_box

AUDIO_SHAPES = {"ave": (32, 16, 16), "hubert": (32, 32, 32), "wenet": (256, 16, 32)}


def synctalk_mel(wav_path: str | os.PathLike) -> np.ndarray:
    """``melspectrogram(load_wav(path, 16000)).T`` of SyncTalk_2D's ``utils.py``: (mel_frames, 80)."""
    import librosa
    from scipy import signal

    wav = librosa.core.load(str(wav_path), sr=16000)[0]
    spectrum = np.abs(librosa.stft(y=signal.lfilter([1, -0.97], [1], wav), n_fft=800, hop_length=200, win_length=800))
    mel = np.dot(librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600), spectrum)
    decibels = 20 * np.log10(np.maximum(np.exp(-5 * np.log(10)), mel)) - 20
    return np.clip((2 * 4.0) * ((decibels - -100) / 100) - 4.0, -4.0, 4.0).T


@torch.no_grad()
def synctalk_aud_ave(encoder: torch.nn.Module, wav_path: str | os.PathLike) -> np.ndarray:
    """The ``aud_ave.npy`` SyncTalk_2D writes for ``wav_path``: (windows + 2, 512)."""
    mel = synctalk_mel(wav_path)
    length = int((mel.shape[0] - 16) / 80.0 * float(25)) + 2
    windows = []
    for index in range(length):
        start = int(80.0 * (index / float(25)))
        end = start + 16
        if end > mel.shape[0]:
            end = mel.shape[0]
            start = end - 16
        windows.append(torch.FloatTensor(mel[start:end].T).unsqueeze(0))
    encoder = encoder.eval()
    outputs = torch.cat([encoder(torch.stack(windows[i : i + 64])) for i in range(0, length, 64)])
    return torch.cat([outputs[:1].repeat(1, 1), outputs, outputs[-1:].repeat(1, 1)], dim=0).numpy()


def synctalk_audio_features(features: np.ndarray, index: int) -> torch.Tensor:
    """SyncTalk_2D's ``get_audio_features``: rows ``[index - 8, index + 8)``, zero rows outside."""
    left, right = index - 8, index + 8
    pad_left = pad_right = 0
    if left < 0:
        pad_left, left = -left, 0
    if right > features.shape[0]:
        pad_right, right = right - features.shape[0], features.shape[0]
    rows = torch.from_numpy(features[left:right])
    if pad_left > 0:
        rows = torch.cat([torch.zeros_like(rows[:pad_left]), rows], dim=0)
    if pad_right > 0:
        rows = torch.cat([rows, torch.zeros_like(rows[:pad_right])], dim=0)
    return rows


def synctalk_template_indices(frames: int, count: int) -> Iterator[int]:
    """The template frame of each output frame, as ``inference_328.py`` steps ``img_idx``."""
    last = count - 1  # its len_img: the number of images minus one
    index, stride = 0, 0
    for _ in range(frames):
        if index > last - 1:
            stride = -1
        if index < 1:
            stride = 1
        index += stride
        yield index


@torch.no_grad()
def synctalk_frames(net: torch.nn.Module, features: np.ndarray, template: str | os.PathLike) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """SyncTalk_2D's output frames for per-frame ``features`` (an ``aud_*.npy``): (BGR frame, U-Net image input,
    audio input, U-Net output) per feature row."""
    import cv2

    template = Path(template)
    count = len(list((template / "full_body_img").glob("*.jpg")))
    net = net.eval()
    for step, index in enumerate(synctalk_template_indices(features.shape[0], count)):
        image = cv2.imread(str(template / "full_body_img" / f"{index}.jpg"))
        xmin, ymin, xmax, ymax = crop_box(np.loadtxt(str(template / "landmarks" / f"{index}.lms"), dtype=np.float32))
        crop = image[ymin:ymax, xmin:xmax]
        h, w = crop.shape[:2]
        crop = cv2.resize(crop, (328, 328), interpolation=cv2.INTER_CUBIC)
        crop_original = crop.copy()
        real = crop[4:324, 4:324].copy()
        masked = cv2.rectangle(real.copy(), (5, 5, 310, 305), (0, 0, 0), -1)
        real_t = torch.from_numpy(real.transpose(2, 0, 1).astype(np.float32) / 255.0)
        masked_t = torch.from_numpy(masked.transpose(2, 0, 1).astype(np.float32) / 255.0)
        concat = torch.cat([real_t, masked_t], dim=0)[None]
        audio = synctalk_audio_features(features, step).reshape(AUDIO_SHAPES[net.mode])[None]
        prediction = net(concat, audio)[0]
        pixels = np.array(prediction.numpy().transpose(1, 2, 0) * 255, dtype=np.uint8)
        crop_original[4:324, 4:324] = pixels
        image[ymin:ymax, xmin:xmax] = cv2.resize(crop_original, (w, h), interpolation=cv2.INTER_CUBIC)
        yield image, concat[0], audio[0], prediction


def _mux_like_ffmpeg(avi: Path, wav: np.ndarray, sample_rate: int, out: Path, crf: int = 20) -> None:
    """``ffmpeg -i temp.avi -i aud.wav -c:v libx264 -crf 20 -c:a aac out.mp4`` with PyAV (there is no ffmpeg binary)."""
    import av

    from motionlab.data.video_io import write_video

    def frames():
        with av.open(str(avi)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")

    write_video(out, frames(), fps=25.0, crf=crf, audio=(wav, sample_rate))


def synctalk_reference_loop(net: torch.nn.Module, features: np.ndarray, wav: np.ndarray, template: str | os.PathLike,
                            out: str | os.PathLike, keep: int = 8) -> tuple[float, list[tuple]]:
    """SyncTalk_2D's whole inference (frames, MJPG ``.avi``, mux); returns its seconds and, for the first ``keep`` frames,
    (RGB frame, image input, audio input, U-Net output)."""
    import cv2

    kept = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        avi = Path(scratch) / "temp.avi"
        writer = None
        for image, concat, audio, prediction in synctalk_frames(net, features, template):
            if writer is None:
                writer = cv2.VideoWriter(str(avi), cv2.VideoWriter_fourcc(*"MJPG"), 25, (image.shape[1], image.shape[0]))
            writer.write(image)
            if len(kept) < keep:
                kept.append((image[:, :, ::-1].copy(), concat, audio, prediction))
        writer.release()
        _mux_like_ffmpeg(avi, wav, 16000, Path(out))
    return time.perf_counter() - started, kept


def main(argv: list[str] | None = None) -> None:
    """SyncTalk_2D's two commands as one process, for whole-command timings: ``data_utils/ave``'s feature writer, then
    ``inference_328.py`` (its U-Net and encoder files are plain state dicts)::

        python -m benchmarks.synctalk_reference UNET.pth ENCODER.pth TEMPLATE AUDIO.wav OUT.mp4
    """
    import argparse

    from motionlab.data.audio import load_wav
    from motionlab.models import create_model

    parser = argparse.ArgumentParser(description=main.__doc__)
    for name in ("unet", "encoder", "template", "wav", "out"):
        parser.add_argument(name)
    args = parser.parse_args(argv)
    encoder = create_model("lipsync_audio_encoder_ave").eval()  # the release file is its inner network's state dict
    encoder.load_state_dict({f"audio_encoder.{key}": value for key, value in torch.load(args.encoder, weights_only=True).items()})
    net = create_model("lipsync_unet328_ave").eval()
    net.load_state_dict(torch.load(args.unet, weights_only=True))
    synctalk_reference_loop(net, synctalk_aud_ave(encoder, args.wav), load_wav(args.wav), args.template, args.out)


if __name__ == "__main__":
    main()
