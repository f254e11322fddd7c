"""Wav2Lip's inference loop (``inference.py``'s ``datagen`` and its model loop), step for step, as the reference the
Wav2Lip lip-sync path is measured against, on the same generator (motionlab's ``wav2lip96`` carries the release's
architecture and names) and the same face boxes:

- frames are BGR (OpenCV); for each mel window the frame ``i % len(frames)``'s box is cropped and resized to 96 with
  OpenCV's default (bilinear) filter; batches of ``wav2lip_batch_size`` (128) crops get their lower half zeroed,
  are concatenated with themselves and scaled to [0, 1];
- the generator's output is scaled by 255 and cast to uint8 (truncation), resized back to the box (bilinear) and
  written into a copy of the frame.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


@torch.no_grad()
def wav2lip_reference_loop(model: torch.nn.Module, frames_bgr: list[np.ndarray], mels: np.ndarray, boxes: np.ndarray,
                           batch_size: int = 128, img_size: int = 96) -> list[np.ndarray]:
    """(N, 80, 16) mel windows, (F, 4) (y1, y2, x1, x2) boxes -> N BGR output frames."""
    out = []
    for start in range(0, len(mels), batch_size):
        indices = [i % len(frames_bgr) for i in range(start, min(len(mels), start + batch_size))]
        img_batch = np.asarray([cv2.resize(frames_bgr[i][boxes[i][0]:boxes[i][1], boxes[i][2]:boxes[i][3]], (img_size, img_size)) for i in indices])
        mel_batch = np.asarray(mels[start : start + len(indices)])
        img_masked = img_batch.copy()
        img_masked[:, img_size // 2:] = 0
        img_batch = np.concatenate((img_masked, img_batch), axis=3) / 255.0
        mel_batch = np.reshape(mel_batch, [len(mel_batch), mel_batch.shape[1], mel_batch.shape[2], 1])
        img = torch.FloatTensor(np.transpose(img_batch, (0, 3, 1, 2)))
        mel = torch.FloatTensor(np.transpose(mel_batch, (0, 3, 1, 2)))
        pred = model(mel, img).cpu().numpy().transpose(0, 2, 3, 1) * 255.0
        for p, i in zip(pred, indices):
            y1, y2, x1, x2 = boxes[i]
            frame = frames_bgr[i].copy()
            frame[y1:y2, x1:x2] = cv2.resize(p.astype(np.uint8), (x2 - x1, y2 - y1))
            out.append(frame)
    return out
