"""Preview renders during training: portrait | driver | generated, as a still grid and a short GIF."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from PIL import Image

from motionlab.data.images import side_by_side
from motionlab.data.video_io import write_gif
from motionlab.utils.errors import InputError

log = logging.getLogger(__name__)



class PreviewCallback(Callback):
    """Every ``every_n_steps`` training steps (and at the end), render previews of held-out identities.

    Writes ``<output_dir>/previews/step_XXXXXXX.png`` (one row per sample: portrait | driver | generated)
    and ``.gif`` (the first validation clip animated), and logs both to W&B when it is the logger. A task
    with a ``preview(dataset, num_samples) -> (grid, caption)`` method renders its own still instead (unless it
    returns ``None``).
    Rendering uses the network in eval mode and no random numbers, so it does not perturb training.
    """

    def __init__(self, output_dir: str, every_n_steps: int = 200, num_samples: int = 4, clip_frames: int = 24, fps: float = 12.5):
        if every_n_steps < 1:
            raise InputError(f"preview every_n_steps must be >= 1, got {every_n_steps}")
        self.output_dir = Path(output_dir) / "previews"
        self.every_n_steps, self.num_samples, self.clip_frames, self.fps = every_n_steps, num_samples, clip_frames, fps

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step % self.every_n_steps == 0 and trainer.is_global_zero:
            self.render(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.render(trainer, pl_module)

    @torch.no_grad()
    def render(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[Path, Path] | None:
        datamodule = trainer.datamodule
        dataset = getattr(datamodule, "datasets", {}).get("val") if datamodule is not None else None
        if dataset is None:
            return None
        if hasattr(pl_module, "preview"):  # tasks with their own preview layout (the lip-sync U-Net, retargeting)
            own = self._render_task_preview(trainer, pl_module, dataset)
            if own is not None:
                return own
        was_training = pl_module.training
        pl_module.eval()
        try:
            samples = [dataset[i] for i in np.linspace(0, len(dataset) - 1, self.num_samples).round().astype(int)]
            portrait = torch.stack([s["portrait"] for s in samples]).to(pl_module.device)
            driver = torch.stack([s["driver"] for s in samples]).to(pl_module.device)
            generated = pl_module(portrait, driver)["image"]
            grid = np.concatenate(list(side_by_side(portrait, driver, generated)), axis=0)

            source, frames = dataset.clip_frames(0, self.clip_frames)
            frames = frames.to(pl_module.device)
            sources = source.to(pl_module.device).expand_as(frames)
            clip = side_by_side(sources, frames, pl_module(sources, frames)["image"])
        finally:
            pl_module.train(was_training)
        stem = self.output_dir / f"step_{trainer.global_step:07d}"
        stem.parent.mkdir(parents=True, exist_ok=True)
        still, gif = stem.with_suffix(".png"), stem.with_suffix(".gif")
        Image.fromarray(grid).save(still)
        write_gif(gif, list(clip), fps=self.fps)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.experiment.log(
                    {
                        "preview/grid": wandb.Image(str(still), caption="portrait | driver | generated"),
                        "preview/clip": wandb.Video(str(gif), format="gif"),
                        "trainer/global_step": trainer.global_step,
                    }
                )
        return still, gif

    def _render_task_preview(self, trainer: L.Trainer, pl_module: L.LightningModule, dataset) -> tuple[Path, None] | None:
        was_training = pl_module.training
        pl_module.eval()
        try:
            preview = pl_module.preview(dataset, self.num_samples)
        finally:
            pl_module.train(was_training)
        if preview is None:  # the task's current mode has no layout of its own
            return None
        grid, caption = preview
        still = self.output_dir / f"step_{trainer.global_step:07d}.png"
        still.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(grid).save(still)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.experiment.log({"preview/grid": wandb.Image(str(still), caption=caption), "trainer/global_step": trainer.global_step})
        return still, None
