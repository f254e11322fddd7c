"""Shared fixtures: small real data on disk and Hydra configs composed the way motionlab-train composes them."""

from __future__ import annotations

import inspect
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn

from motionlab.data.synthetic import ToyWorldSpec, generate_toy_world

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TINY_WORLD = {"identities": 8, "frames": 8, "size": 32, "seed": 0}
# Per experiment: networks small enough for CPU steps in milliseconds, same code paths as the real ones.
TINY_NETS = {
    "quickstart": ["model.net.motion_channels=[8,16]", "model.net.appearance_channels=[8,16]", "model.net.num_res_blocks=1"],
    "lora_animator_target": ["model.net.motion_channels=[8,16]", "model.net.appearance_channels=[8,16]", "model.net.num_res_blocks=1"],
    "animator_descriptors_quick": ["model.net.motion_channels=[8,16]", "model.net.appearance_channels=[8,16]",
                                   "model.net.num_res_blocks=1", "model.net.num_descriptors=4"],
    "liveportrait_quick": ["model.net.num_kp=4", "model.net.motion_extractor.depths=[1,1,1,1]", "model.net.warping_module.dense_motion_params.block_expansion=4"],
    "liveportrait_gan_quick": ["model.net.num_kp=4", "model.net.motion_extractor.depths=[1,1,1,1]", "model.net.warping_module.dense_motion_params.block_expansion=4",
                               "model.discriminator.block_expansion=4", "model.discriminator.num_blocks=2", "model.discriminator.part_blocks=1"],
    "liveportrait_retargeting_quick": ["model.net.num_kp=4", "model.net.motion_extractor.depths=[1,1,1,1]",
                                       "model.net.warping_module.dense_motion_params.block_expansion=4", "data.samples_per_identity=2"],
    "liveportrait_stitching_quick": ["model.net.num_kp=4", "model.net.motion_extractor.depths=[1,1,1,1]",
                                     "model.net.warping_module.dense_motion_params.block_expansion=4"],
    "descriptor_quick": ["model.net.num_kp=4", "model.net.kp_detector.block_expansion=8", "model.net.generator.block_expansion=8",
                         "model.net.generator.dense_motion_params.block_expansion=8", "model.regression_frames=2"],
    "tpsmm_quick": ["model.net.num_tps=2", "model.net.generator.block_expansion=8", "model.net.dense_motion.block_expansion=8",
                    "model.regression_frames=2"],
    "tpsmm_avd_quick": ["model.net.num_tps=2", "model.net.generator.block_expansion=8", "model.net.dense_motion.block_expansion=8"],
    # five keypoints: the guided eye corners the correspondence prior takes the eye line from
    "descriptor_guided_quick": ["model.net.num_kp=5", "model.net.kp_detector.block_expansion=8", "model.net.generator.block_expansion=8",
                                "model.net.generator.dense_motion_params.block_expansion=8", "model.regression_frames=2"],
}


# adapter experiments whose loss assumes a landmark-guided descriptor model (the guided_descriptor_checkpoint fixture)
GUIDED_ADAPTERS = ("adapter_unpaired_quick",)


# session fixtures that train a model (seconds to minutes each)
TRAINING_FIXTURES = {"animator_base_checkpoint", "descriptor_ckpt", "guided_descriptor_checkpoint", "animator_descriptors_checkpoint",
                     "adapter_checkpoint", "lipsync_checkpoints", "tpsmm_ckpt"}
# what a test's own code calls when it trains, runs a whole pipeline or a browser
TRAINING_CALLS = re.compile(r"\b(train|_train|trained_run|run_experiment|_baselines)\(|motionlab-train|experiments\.baselines|nbclient|chromium|playwright")


def _calls_training(function) -> bool:
    try:
        return TRAINING_CALLS.search(inspect.getsource(function)) is not None
    except (OSError, TypeError):
        return False


def _trains(item) -> bool:
    """Whether the test, or a fixture it uses (a module's own trained checkpoint, say), trains or runs a pipeline."""
    if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    functions = [getattr(item, "function", None)]
    info = getattr(item, "_fixtureinfo", None)
    for definitions in (info.name2fixturedefs.values() if info is not None else ()):
        functions += [definition.func for definition in definitions if "site-packages" not in str(getattr(definition, "baseid", ""))]
    return any(function is not None and _calls_training(function) for function in functions)


def pytest_collection_modifyitems(config, items):
    """Marks the tests that train (a fixture or their own code does) as ``trains``: ``make test-fast`` leaves them out.
    Under pytest-xdist (`make test` runs two workers, --dist loadgroup), every test that needs the lip-sync stages
    goes to one worker, which builds them once (minutes); the other worker runs the rest meanwhile."""
    for item in items:
        if _trains(item):
            item.add_marker(pytest.mark.trains)
        if "lipsync_checkpoints" in item.fixturenames or "lipsync" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("lipsync_checkpoints"))


def pytest_configure(config):
    """What commands derive from a user's files (compiled ONNX graphs) goes to a cache of the test session, not ~/.cache."""
    import tempfile

    os.environ.setdefault("MOTIONLAB_CACHE_DIR", tempfile.mkdtemp(prefix="motionlab-test-cache-"))


@pytest.fixture(autouse=True)
def _single_thread_torch():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory) -> Path:
    """A tiny toy world in the seed layout (8 identities x 8 frames, 32 px)."""
    return generate_toy_world(tmp_path_factory.mktemp("toy") / "world", ToyWorldSpec(**TINY_WORLD))


# Lip-sync experiments run on one 3-second toy talking head at 128 px (the networks keep their real size:
# their state dicts are SyncTalk_2D's); the *_real_* ones read it as a preprocessed folder.
TINY_TALKING = ["data.toy_talking.clips=1", "data.toy_talking.seconds=3", "data.toy_talking.size=128"]


def tiny_overrides(root: Path, experiment: str = "quickstart", lipsync: dict | None = None) -> list[str]:
    """Overrides for a seconds-long CPU run of ``experiment`` whose files all land under ``root``.

    Lip-sync experiments need ``lipsync`` (the ``lipsync_checkpoints`` fixture) for their inputs; adapter
    experiments a ``data.descriptor_ckpt`` with 4 keypoints (the ``descriptor_ckpt`` fixture).
    """
    if experiment.startswith("adapter"):
        num_kp = 5 if experiment in GUIDED_ADAPTERS else 4
        return [f"paths.root_dir={root}", "data.toy_world.identities=8", "data.toy_world.frames=8", "data.toy_world.size=32",
                "data.image_size=32", "data.val_fraction=0.25", "data.test_fraction=0.25", "data.batch_size=8", f"model.net.num_kp={num_kp}",
                "model.net.hidden=16"]
    if "musetalk" in experiment:
        return [f"paths.root_dir={root}", *TINY_TALKING, "data.batch_size=2", "data.eval_batch_size=4"]
    if "lipsync" in experiment:
        data = [f"data.root={lipsync['clip']}"] if "_real_" in experiment else TINY_TALKING
        return [f"paths.root_dir={root}", *data, "data.batch_size=2", "data.eval_batch_size=4", *lipsync_links(experiment, lipsync)]
    return [
        f"paths.root_dir={root}",
        "data.toy_world.identities=8",
        "data.toy_world.frames=8",
        "data.toy_world.size=32",
        "data.image_size=32",
        "data.val_fraction=0.25",
        "data.batch_size=4",
        "data.eval_batch_size=8",
        "callbacks.preview.every_n_steps=5",
        "callbacks.preview.clip_frames=4",
        *TINY_NETS[experiment],
    ]


@pytest.fixture(scope="session")
def animator_base_checkpoint(tmp_path_factory) -> Path:
    """A tiny quickstart Animator (one epoch): the base of the LoRA runs."""
    from motionlab.train import train

    root = tmp_path_factory.mktemp("animator_base")
    train(compose_train(["experiment=quickstart", "logger=none", "trainer.max_epochs=1", "trainer.deterministic=true", *tiny_overrides(root)], root / "run"))
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def tpsmm_ckpt(tmp_path_factory) -> Path:
    """A tiny TPSMM (2 splines) trained for two steps on the tiny toy world."""
    from motionlab.train import train

    root = tmp_path_factory.mktemp("tpsmm")
    train(compose_train(["experiment=tpsmm_quick", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                         *tiny_overrides(root, "tpsmm_quick")], root / "run"))
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def descriptor_ckpt(tmp_path_factory) -> Path:
    """A descriptor model (tiny FOMM, 4 keypoints) trained for two steps on the tiny toy world."""
    from motionlab.train import train

    root = tmp_path_factory.mktemp("descriptor")
    cfg = compose_train(["experiment=descriptor_quick", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                         *tiny_overrides(root, "descriptor_quick")], root / "run")
    metrics, _ = train(cfg)
    assert "val/kp_to_gt_error_pct" in metrics and "val/akd" in metrics
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def guided_descriptor_checkpoint(tmp_path_factory) -> Path:
    """A landmark-guided descriptor model (tiny FOMM, 5 keypoints, descriptor_guided_quick) trained for two steps."""
    from motionlab.train import train

    root = tmp_path_factory.mktemp("guided_descriptor")
    cfg = compose_train(["experiment=descriptor_guided_quick", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                         *tiny_overrides(root, "descriptor_guided_quick")], root / "run")
    metrics, _ = train(cfg)
    assert metrics["train/landmark_guidance"] > 0
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def animator_descriptors_checkpoint(tmp_path_factory, descriptor_ckpt) -> Path:
    """The descriptor Animator trained for two steps on a copy of the descriptor model, which is then deleted: the
    checkpoint must be usable on its own (it carries its frozen detector)."""
    import shutil

    from motionlab.train import train

    root = tmp_path_factory.mktemp("animator_descriptors")
    detector = shutil.copy(descriptor_ckpt, root / "descriptor.ckpt")
    cfg = compose_train(["experiment=animator_descriptors_quick", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                         # through the descriptor cache, with the descriptor-delta alignment of loss=animator_descriptors
                         f"data.descriptor_ckpt={detector}", f"model.descriptor_model.ckpt={detector}", "loss=animator_descriptors",
                         "data.augmentation=null", *tiny_overrides(root, "animator_descriptors_quick")], root / "run")
    train(cfg)
    Path(detector).unlink()
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def adapter_checkpoint(tmp_path_factory, descriptor_ckpt) -> Path:
    """A paired landmark adapter (temporal, window 5) trained for two steps into the tiny descriptor model's space."""
    from motionlab.train import train

    root = tmp_path_factory.mktemp("adapter")
    cfg = compose_train(["experiment=adapter_paired_quick", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                         f"data.descriptor_ckpt={descriptor_ckpt}", *tiny_overrides(root, "adapter_paired_quick")], root / "run")
    metrics, _ = train(cfg)
    assert {"test/kp_error_pct", "test/kp_error_pct_affine", "test/l1", "test/l1_affine", "test/l1_own"} <= set(metrics)
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def talking_clip(tmp_path_factory) -> Path:
    """A 3-second toy talking head at 128 px in the SyncTalk_2D layout (mp4 with audio, frames, .lms, aud.wav)."""
    from motionlab.data.talking import synth_talking_clip

    folder = tmp_path_factory.mktemp("talking") / "toy_talk"
    synth_talking_clip(folder, seconds=3.0, size=128, seed=3)
    return folder


@pytest.fixture(scope="session")
def lipsync_checkpoints(tmp_path_factory, talking_clip) -> dict[str, Path]:
    """The three lip-sync stages, two training steps each, chained as in the README: the ave audio encoder,
    SyncNet on its features, the U-Net with the sync loss. Returns their last.ckpt paths and the clip."""
    from motionlab.train import train

    root = tmp_path_factory.mktemp("lipsync")
    common = ["logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
              f"data.root={talking_clip}", "data.val_fraction=0.3", "data.batch_size=2", "data.eval_batch_size=16", f"paths.root_dir={root}"]
    paths = {"clip": talking_clip}
    for experiment, key in (("lipsync_av_real_quick", "audio_encoder"), ("lipsync_syncnet_real_quick", "syncnet"), ("lipsync_real_quick", "unet")):
        metrics, _ = train(compose_train([f"experiment={experiment}", *common, *lipsync_links(experiment, paths)], root / key))
        paths[key] = root / key / "checkpoints" / "last.ckpt"
        paths[f"{key}_metrics"] = metrics
    return paths


def lipsync_links(experiment: str, checkpoints: dict) -> list[str]:
    """The overrides chaining the lip-sync stages as the README does: stage 2 reads stage 1's encoder, stage 3 both."""
    links = []
    unet = experiment in ("lipsync_quick", "lipsync_real_quick", "lora_lipsync_speaker")
    if "syncnet" in experiment or unet:
        links.append(f"data.audio_encoder_ckpt={checkpoints['audio_encoder']}")
    if unet:
        links.append(f"model.syncnet.ckpt={checkpoints['syncnet']}")
    return links


def compose_train(overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``train.yaml`` as Hydra would for a single run whose output folder is ``output_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="motionlab.conf", version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


def face_video(path, frames: int = 30, fps: float = 30.0, with_face=lambda i: True):
    """A real photo of a face (scikit-image's astronaut), drifting, with a 440 Hz tone, as H.264 + AAC."""
    from skimage import data

    from motionlab.data.video_io import write_video

    photo = data.astronaut()[:320, 80:400]
    blank = np.full_like(photo, 127)
    images = [np.roll(photo, i, axis=1) if with_face(i) else blank for i in range(frames)]
    t = np.arange(int(48000 * frames / fps)) / 48000
    write_video(path, images, fps=fps, crf=12, audio=(0.3 * np.sin(2 * np.pi * 440 * t).astype(np.float32), 48000))
    return path


def motionlab_bin(name: str) -> str:
    """Path of an installed console script of this environment."""
    import sys

    path = Path(sys.executable).with_name(name)
    assert path.is_file(), f"{name} is not installed next to {sys.executable}"
    return str(path)


def run_cli(name: str, *args, cwd: Path):
    """Run the console command ``name`` with ``args`` (key=value overrides) in ``cwd``, in this process
    (:func:`run_command`: the entry point's real parsing and reporting, without a process start); returns an object
    with ``returncode``, ``stdout`` and ``stderr`` as ``subprocess.run`` would."""
    from types import SimpleNamespace

    previous = os.getcwd()
    os.chdir(cwd)
    try:
        code, out, err = run_command([name, *map(str, args)])
    finally:
        os.chdir(previous)
    return SimpleNamespace(returncode=code, stdout=out, stderr=err)


def subprocess_env(root: Path) -> dict:
    # without the W&B service a W&B run in this test process started: a child connecting to it would share one service
    # across runs (a killed child's run would stay open in it), which no user's process does
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update({"WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"})
    return env


def count_video_frames(path) -> int:
    """Decode a video completely with PyAV and count its frames (does not trust container metadata)."""
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def read_rgb(path: Path) -> np.ndarray:
    from motionlab.data.video_io import read_image

    return read_image(path)


COMMANDS = {
    "motionlab-train": "motionlab.cli.train",
    "motionlab-animate": "motionlab.cli.animate",
    "motionlab-lipsync": "motionlab.cli.lipsync",
    "motionlab-eval": "motionlab.cli.evaluate",
    "motionlab-export": "motionlab.cli.export",
    "motionlab-cache": "motionlab.cli.cache",
    "motionlab-data": "motionlab.cli.data",
    "motionlab-app": "motionlab.cli.viewer",
}


def run_command(argv: list[str]) -> tuple[int, str, str]:
    """Run a console entry point (``argv[0]``) in this process, as its script would: its argument parsing, Hydra
    composition and error reporting, without a process start (which mostly imports torch). Returns the exit code,
    stdout and stderr."""
    import contextlib
    import importlib
    import io
    import sys

    main = importlib.import_module(COMMANDS[argv[0]]).main
    saved, sys.argv = sys.argv, list(argv)
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            try:
                main()
            except SystemExit as exit:
                code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    finally:
        sys.argv = saved
    return code, out.getvalue(), err.getvalue()


class _Detector(nn.Module):
    """det_10g's interface at a 512 input: scores (N, 1), box distances (N, 4), key points (N, 10) per stride 8 / 16 / 32,
    two anchors per place. One anchor fires: stride 16, row 10, column 12, its box 2 / 3 strides from the centre."""

    def forward(self, image):
        zero = image.mean() * 0
        outputs = {"scores": [], "boxes": [], "kps": []}
        for stride in (8, 16, 32):
            count = (512 // stride) ** 2 * 2
            scores = torch.zeros(count, 1)
            if stride == 16:
                scores[(10 * 32 + 12) * 2, 0] = 0.9
            outputs["scores"].append(scores + zero)
            outputs["boxes"].append(torch.tensor([2.0, 3.0, 2.0, 3.0]).expand(count, 4) + zero)
            outputs["kps"].append(torch.zeros(count, 10) + zero)
        return (*outputs["scores"], *outputs["boxes"], *outputs["kps"])


class _Constant(nn.Module):
    def __init__(self, *values: torch.Tensor):
        super().__init__()
        self.values = values

    def forward(self, image):
        return tuple(v + image.mean() * 0 for v in self.values) if len(self.values) > 1 else self.values[0] + image.mean() * 0


def _export(module: nn.Module, path, size: int, input_name: str, outputs: int):
    torch.onnx.export(module, (torch.rand(1, 3, size, size),), str(path), input_names=[input_name],
                      output_names=[f"out{i}" for i in range(outputs)], opset_version=17, dynamo=False)
    return path


def liveportrait_crop_models(root: Path) -> Path:
    """Stand-ins for LivePortrait's crop models with the release models' input / output names and shapes, in the
    release layout under ``root`` (pretrained_weights/{liveportrait/landmark.onnx, insightface/models/buffalo_l/*.onnx});
    returns the liveportrait folder. Their outputs are constant (known answers), the detector's one face a fixed box."""
    insight = root / "insightface" / "models" / "buffalo_l"
    insight.mkdir(parents=True)
    (root / "liveportrait").mkdir()
    _export(_Detector(), insight / "det_10g.onnx", 512, "input.1", 9)
    points_106 = torch.linspace(-0.5, 0.5, 212).view(1, 212)
    _export(_Constant(points_106), insight / "2d106det.onnx", 192, "data", 1)
    points_203 = torch.linspace(0.2, 0.8, 406).view(1, 406)
    _export(_Constant(torch.zeros(1, 214), torch.zeros(1, 1), points_203), root / "liveportrait" / "landmark.onnx", 224, "input", 3)
    return root / "liveportrait"


# MuseTalk 1.5 at reduced widths (same blocks, attention and depth pattern as the release) for CPU tests
MUSETALK_REDUCED = {"unet": {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "norm_num_groups": 8, "cross_attention_dim": 32,
                             "attention_head_dim": 4},
                    "vae": {"block_out_channels": [16, 16, 32, 32], "layers_per_block": 1, "norm_num_groups": 8},
                    "whisper": {"d_model": 32, "encoder_layers": 2, "encoder_attention_heads": 2, "encoder_ffn_dim": 64}}


def write_musetalk_release(folder: Path, seed: int = 0) -> Path:
    """A MuseTalk ``models/`` folder of random reduced-width weights in the release's file formats: the U-Net state dict
    with its diffusers config, the VAE with diffusers 0.4's attention names, Whisper's full ``model.encoder.`` /
    ``model.decoder.`` file with transformers' configs, BiSeNet without BatchNorm counters (as 2019 files)."""
    import json

    from motionlab.models.musetalk import FEATURE_SETTINGS, UNET_SETTINGS, VAE_SETTINGS, WHISPER_SETTINGS
    from motionlab.models.registry import build

    torch.manual_seed(seed)
    model = build("musetalk_v15", MUSETALK_REDUCED)
    state = model.state_dict()

    def part(prefix: str) -> dict:
        return {key[len(prefix) + 1 :]: value.clone() for key, value in state.items() if key.startswith(prefix + ".")}

    for sub in ("musetalkV15", "sd-vae", "whisper", "face-parse-bisent"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    torch.save(part("unet"), folder / "musetalkV15" / "unet.pth")
    (folder / "musetalkV15" / "musetalk.json").write_text(json.dumps(
        {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.6.0.dev0", **UNET_SETTINGS, **MUSETALK_REDUCED["unet"]}))
    old = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    vae = {}
    for key, value in part("vae").items():
        for new, name in old.items():
            if ".attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{name}.")
        vae[key] = value
    torch.save(vae, folder / "sd-vae" / "diffusion_pytorch_model.bin")
    (folder / "sd-vae" / "config.json").write_text(json.dumps(
        {"_class_name": "AutoencoderKL", "_diffusers_version": "0.4.2", **{k: v for k, v in VAE_SETTINGS.items() if k != "scaling_factor"},
         **MUSETALK_REDUCED["vae"]}))
    whisper = {f"model.encoder.{key}": value for key, value in part("audio_encoder").items()}
    whisper["model.decoder.layer_norm.weight"] = torch.ones(MUSETALK_REDUCED["whisper"]["d_model"])
    torch.save(whisper, folder / "whisper" / "pytorch_model.bin")
    (folder / "whisper" / "config.json").write_text(json.dumps(
        {"architectures": ["WhisperForConditionalGeneration"], "model_type": "whisper", "decoder_layers": 2, "decoder_attention_heads": 2, "decoder_ffn_dim": 64,
         **WHISPER_SETTINGS, **MUSETALK_REDUCED["whisper"]}))
    (folder / "whisper" / "preprocessor_config.json").write_text(json.dumps({"feature_extractor_type": "WhisperFeatureExtractor", **FEATURE_SETTINGS}))
    parser = {key: value for key, value in part("face_parser").items() if not key.endswith("num_batches_tracked")}
    # a parser that calls every pixel skin (its head reads ReLU features, all >= 0), so the blending mask covers the jaw
    parser["conv_out.conv_out.weight"] = torch.zeros_like(parser["conv_out.conv_out.weight"])
    parser["conv_out.conv_out.weight"][1] = 1.0
    torch.save(parser, folder / "face-parse-bisent" / "79999_iter.pth")
    return folder


@pytest.fixture(scope="session")
def musetalk_checkpoint(tmp_path_factory, talking_clip) -> Path:
    """Two steps of musetalk_quick (toy-scale MuseTalk stage 1) on the toy talking clip: its last.ckpt."""
    from motionlab.train import train

    root = tmp_path_factory.mktemp("musetalk_run")
    train(compose_train(["experiment=musetalk_quick", "logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2",
                         "trainer.limit_val_batches=1", f"+data.root={talking_clip}", "data.toy_talking=null", "data.val_fraction=0.3",
                         "data.batch_size=2", "data.eval_batch_size=4", "validate_before_training=false", f"paths.root_dir={root}"], root / "run"))
    return root / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="session")
def musetalk_release(tmp_path_factory) -> Path:
    return write_musetalk_release(tmp_path_factory.mktemp("musetalk") / "models")
