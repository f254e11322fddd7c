"""Malformed inputs against the eight commands, one row per case: each exits with 2, says what was wrong on one line
of stderr with no traceback, writes nothing, and leaves an existing output as it was.

Rows run the commands' real entry points in this process (their argument parsing, Hydra composition and error
reporting; a subprocess per row would spend most of its time importing torch); `test_cli_exit_code_in_a_process`
checks the same path in a real process.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import COMMANDS, face_video, motionlab_bin, run_command, subprocess_env
from PIL import Image

SENTINEL = b"previous good output"


@pytest.fixture(scope="module")
def bad(tmp_path_factory, toy_world) -> dict[str, Path]:
    """Good and malformed files of every kind the commands read."""
    root = tmp_path_factory.mktemp("bad")
    files = {"portrait": toy_world / "id_0000.png", "driver": toy_world / "id_0001_video", "dir": root / "a_folder"}
    files["dir"].mkdir()
    png = files["portrait"].read_bytes()
    for name, payload in {"empty.png": b"", "truncated.png": png[: len(png) // 3], "text.png": b"not an image\n", "empty.mp4": b"",
                          "text.mp4": b"not a video\n", "empty.wav": b"", "text.wav": b"RIFF not audio\n", "random.ckpt": bytes(range(256)) * 8,
                          "notes.txt": b"notes\n"}.items():
        (root / name).write_bytes(payload)
        files[name] = root / name
    Image.new("RGB", (400, 400), (120, 80, 60)).save(root / "large.png")
    files["large.png"] = root / "large.png"
    files["good.mp4"] = video = face_video(root / "good.mp4", frames=12)
    files["faceless.mp4"] = face_video(root / "faceless.mp4", frames=6, with_face=lambda i: False)
    (root / "truncated.mp4").write_bytes(video.read_bytes()[:2000])
    files["truncated.mp4"] = root / "truncated.mp4"
    files["audio_only.mp4"] = _audio_only_mp4(root / "audio_only.mp4")
    files["missing"] = root / "missing.file"
    return files


def _audio_only_mp4(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 16000), np.float32), format="flt", layout="mono")
        frame.sample_rate, frame.pts = 16000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def checkpoints(animator_base_checkpoint, lipsync_checkpoints, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bad_ckpt")
    animator = animator_base_checkpoint
    raw = animator.read_bytes()
    (root / "truncated.ckpt").write_bytes(raw[: len(raw) // 2])
    payload = torch.load(animator, weights_only=True)
    torch.save({k.removeprefix("net."): v for k, v in payload["state_dict"].items()}, root / "plain.pth")
    crafted = dict(payload)  # a stored network spec that names code instead of a registered model
    crafted["motionlab"] = {**payload["motionlab"], "models": {"net": {"name": "builtins.open", "args": {"file": str(root / "pwned")}}}}
    torch.save(crafted, root / "crafted.ckpt")
    targeted = dict(payload)
    targeted["motionlab"] = {**payload["motionlab"], "models": {"net": {"name": "animator_v1", "args": {"_target_": "builtins.open"}}}}
    torch.save(targeted, root / "targeted.ckpt")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, root / "weights.safetensors")
    from motionlab.models import load_model
    from motionlab.models.lora import LoraSpec, add_lora, read_adapter, save_adapter
    from motionlab.utils.io import file_digest

    net = add_lora(load_model(animator), LoraSpec(rank=2))
    tensors, meta = read_adapter(save_adapter(net, root / "adapter.safetensors", file_digest(animator), animator.name))
    lora = {**meta["lora"], "_target_": "builtins.exec"}  # an adapter file whose settings name code
    save_file(tensors, root / "crafted_adapter.safetensors", metadata={"format": "motionlab-lora", "lora": json.dumps(lora),
              "model": json.dumps(meta["model"]), "base_sha256": meta["base_sha256"], "base_name": meta["base_name"]})
    (root / "crafted_profile.json").write_text(json.dumps(["_target_", "os.system", "touch pwned"]))
    _crafted_configs(payload, root)
    _crafted_adapters(tensors, meta, root)
    _crafted_profiles(root)
    _crafted_onnx(root)
    return {"animator": animator, "unet": lipsync_checkpoints["unet"], "clip": lipsync_checkpoints["clip"], **{p.name: p for p in root.iterdir()}}


def _marker_payload(marker: Path) -> str:
    """An OmegaConf interpolation that, if a reader ever resolved and instantiated it, would write ``marker``."""
    return "${oc.create:'{_target_: pathlib.Path.write_text, self: {_target_: pathlib.Path, _args_: [" + str(marker) + "]}, data: pwned}'}"


def _stored_variant(payload: dict, edit) -> dict:
    crafted = json.loads(json.dumps({key: value for key, value in payload.items() if key == "motionlab"}))
    edit(crafted["motionlab"])
    return {**payload, "motionlab": crafted["motionlab"]}


# stored-config variants of a real checkpoint: a crafted value where each reader might resolve or build it
STORED_VARIANTS = {
    "interp_data": (lambda m, x: m["config"]["data"]["augmentation"].__setitem__("hue", x), r"'config.data.augmentation.hue' holds the interpolation"),
    "interp_top": (lambda m, x: m["config"].__setitem__("seed", x), r"'config.seed' holds the interpolation"),
    "interp_list": (lambda m, x: m["config"].__setitem__("tags", ["ok", [x]]), r"'config.tags\[1\]\[0\]' holds the interpolation"),
    "interp_spec": (lambda m, x: m["models"]["net"]["args"].__setitem__("hidden", x), r"'models.net.args.hidden' holds the interpolation"),
    "interp_predictor": (lambda m, x: m.__setitem__("predictor", {"relative": x}), r"'predictor.relative' holds the interpolation"),
    "interp_key": (lambda m, x: m["config"].__setitem__(x, 1), r"holds an interpolation; a stored config is data"),
    "resolver_env": (lambda m, x: m["config"]["data"].__setitem__("cache_dir", "${oc.env:HOME}/elsewhere"), r"'config.data.cache_dir' holds the interpolation"),
}


def _crafted_configs(payload: dict, root: Path) -> None:
    for name, (edit, _) in STORED_VARIANTS.items():
        torch.save(_stored_variant(payload, lambda meta, edit=edit: edit(meta, _marker_payload(root / "pwned"))), root / f"{name}.ckpt")
    # stored data configs that name code or Hydra's keys: refused where evaluation rebuilds the datamodule
    for name, edit in {"target_data": lambda m: m["config"]["data"].__setitem__("_target_", "builtins.exec"),
                       "target_nested": lambda m: m["config"]["data"]["augmentation"].__setitem__("_target_", "os.system"),
                       "args_data": lambda m: m["config"]["data"].__setitem__("_args_", ["x"]),
                       "partial_data": lambda m: m["config"]["data"].__setitem__("_partial_", True),
                       "unknown_data_key": lambda m: m["config"]["data"].__setitem__("no_such_parameter", 1),
                       "no_data": lambda m: m["config"].pop("data")}.items():
        torch.save(_stored_variant(payload, edit), root / f"{name}.ckpt")
    torch.save({**payload, "motionlab": {**payload["motionlab"], "config": {**payload["motionlab"]["config"], "seed": torch.zeros(2)}}},
               root / "tensor_in_config.ckpt")
    torch.save({"state_dict": payload["state_dict"]}, root / "no_motionlab_entry.ckpt")


def _crafted_adapters(tensors: dict, meta: dict, root: Path) -> None:
    from safetensors.torch import save_file

    def write(name: str, **changes) -> None:
        metadata = {"format": "motionlab-lora", "lora": json.dumps(meta["lora"]), "model": json.dumps(meta["model"]),
                    "base_sha256": meta["base_sha256"], "base_name": meta["base_name"], **changes}
        save_file(tensors, root / name, metadata=metadata)

    write("adapter_model_null.safetensors", model="null")
    write("adapter_model_number.safetensors", model="3")
    write("adapter_model_list.safetensors", model=json.dumps(["animator_v1"]))
    write("adapter_lora_list.safetensors", lora=json.dumps([1, 2]))
    write("adapter_alpha_text.safetensors", lora=json.dumps({**meta["lora"], "alpha": "big"}))
    write("adapter_huge_rank.safetensors", lora=json.dumps({**meta["lora"], "rank": 1_000_000}))
    write("adapter_interp.safetensors", model=json.dumps({**meta["model"], "name": _marker_payload(root / "pwned")}))


def _crafted_profiles(root: Path) -> None:
    good = {"format": "motionlab-identity-profile", "version": 1, "name": "x", "embedder": "image", "mean": [0.5, 0.5], "spread": 0.1,
            "frames": [0], "embeddings": [[0.5, 0.5]], "landmarks": None, "frame_count": 1, "frames_without_face": 0, "provenance": {}}
    for name, changes in {"nan_mean": {"mean": [float("nan"), 0.5]}, "empty_embeddings": {"embeddings": []},
                          "text_embeddings": {"embeddings": [["a", "b"]]}, "interp_provenance": {"provenance": {"source": _marker_payload(root / "pwned")}}}.items():
        (root / f"profile_{name}.json").write_text(json.dumps({**good, **changes}))


def _crafted_onnx(root: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    (root / "text.onnx").write_text("not a graph\n")
    weight = numpy_helper.from_array(np.ones((2,), np.float32), "w")
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, root / "untagged.onnx")
    raw = (root / "untagged.onnx").read_bytes()
    (root / "truncated.onnx").write_bytes(raw[: len(raw) // 2])
    weight = model.graph.initializer[0]
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../etc/passwd"), ("offset", "0"), ("length", "8")):
        weight.external_data.add(key=key, value=value)
    onnx.save(model, root / "traversal.onnx")


def _animate(b, c, **over):
    args = {"ckpt": c["animator"], "portrait": b["portrait"], "driver": b["driver"], "out": "OUT.mp4", **over}
    return ["motionlab-animate", *(f"{k}={v}" for k, v in args.items())]


def _lipsync(b, c, **over):
    args = {"ckpt": c["unet"], "template": c["clip"], "audio": c["clip"] / "aud.wav", "out": "OUT.mp4", "runtime": "torch", **over}
    return ["motionlab-lipsync", *(f"{k}={v}" for k, v in args.items())]


def _train(*over):
    return ["motionlab-train", "experiment=quickstart", "logger=none", "trainer.fast_dev_run=true", *over]


# (case id, argv builder over (bad files, checkpoints), message regex)
CASES = [
    # images
    ("image-zero-byte", lambda b, c: _animate(b, c, portrait=b["empty.png"]), r"empty.png cannot be decoded"),
    ("image-truncated", lambda b, c: _animate(b, c, portrait=b["truncated.png"]), r"truncated.png cannot be decoded"),
    ("image-text", lambda b, c: _animate(b, c, portrait=b["text.png"]), r"text.png cannot be decoded"),
    ("image-missing", lambda b, c: _animate(b, c, portrait=b["missing"]), r"missing.file does not exist"),
    ("image-folder", lambda b, c: _animate(b, c, portrait=b["dir"]), r"a_folder is a folder"),
    ("image-over-pixel-limit", lambda b, c: _animate(b, c, portrait=b["large.png"], **{"limits.max_image_pixels": 100000}),
     r"400x400 pixels, over the limit of 100000; downscale it or raise limits.max_image_pixels"),
    ("profile-image-text", lambda b, c: ["motionlab-data", "profile", f"source={b['text.png']}", "out=OUT.json"], r"text.png"),
    # videos
    ("video-zero-byte", lambda b, c: _animate(b, c, driver=b["empty.mp4"]), r"empty.mp4 is empty \(0 bytes\)"),
    ("video-truncated", lambda b, c: _animate(b, c, driver=b["truncated.mp4"]), r"truncated.mp4 cannot be read: .*truncated, or not a video"),
    ("video-text", lambda b, c: _animate(b, c, driver=b["text.mp4"]), r"text.mp4 cannot be read"),
    ("video-audio-only", lambda b, c: _animate(b, c, driver=b["audio_only.mp4"]), r"audio_only.mp4 has no video stream \(audio only\)"),
    ("video-over-frame-limit", lambda b, c: _animate(b, c, driver=b["good.mp4"], **{"limits.max_video_frames": 10}),
     r"good.mp4 has 12 frames, over the limit of 10; cut it or raise limits.max_video_frames"),
    ("video-missing", lambda b, c: _animate(b, c, driver=b["missing"]), r"missing.file is neither a frame folder nor a video"),
    ("video-not-a-video", lambda b, c: _animate(b, c, driver=b["notes.txt"]), r"notes.txt is neither a frame folder nor a video"),
    ("talking-zero-byte", lambda b, c: ["motionlab-data", "talking", f"video={b['empty.mp4']}", "out=OUT"], r"empty.mp4 is empty"),
    ("talking-audio-only", lambda b, c: ["motionlab-data", "talking", f"video={b['audio_only.mp4']}", "out=OUT"], r"has no video stream"),
    ("talking-no-face", lambda b, c: ["motionlab-data", "talking", f"video={b['faceless.mp4']}", "out=OUT"], r"faceless.mp4: no face was found in any of its 5 frames"),
    ("talking-text", lambda b, c: ["motionlab-data", "talking", f"video={b['text.mp4']}", "out=OUT"], r"text.mp4 cannot be read"),
    # audio
    ("audio-zero-byte", lambda b, c: _lipsync(b, c, audio=b["empty.wav"]), r"empty.wav is empty \(0 bytes\)"),
    ("audio-text", lambda b, c: _lipsync(b, c, audio=b["text.wav"]), r"text.wav cannot be decoded"),
    ("audio-missing", lambda b, c: _lipsync(b, c, audio=b["missing"]), r"audio=.*missing.file does not exist"),
    ("lipsync-template-missing", lambda b, c: _lipsync(b, c, template=b["missing"]), r"template=.*missing.file does not exist"),
    ("lipsync-features-wrong-convention", lambda b, c: _lipsync(b, c, features=_synctalk_features(b)), r"holds synctalk_2d features"),
    # checkpoints
    ("ckpt-missing", lambda b, c: _animate(b, c, ckpt=b["missing"]), r"missing.file does not exist"),
    ("ckpt-folder", lambda b, c: _animate(b, c, ckpt=b["dir"]), r"a_folder is a folder without .pth files; give the .ckpt file"),
    ("ckpt-truncated", lambda b, c: _animate(b, c, ckpt=c["truncated.ckpt"]), r"truncated.ckpt cannot be read weights-only"),
    ("ckpt-random-bytes", lambda b, c: _animate(b, c, ckpt=b["random.ckpt"]), r"random.ckpt cannot be read weights-only"),
    ("ckpt-safetensors", lambda b, c: _animate(b, c, ckpt=c["weights.safetensors"]), r"weights.safetensors is not a motionlab checkpoint .*arch=NAME"),
    ("ckpt-plain-state-dict", lambda b, c: _animate(b, c, ckpt=c["plain.pth"]), r"plain.pth is not a motionlab checkpoint .*arch=NAME"),
    ("ckpt-crafted-name", lambda b, c: _animate(b, c, ckpt=c["crafted.ckpt"]), r"crafted.ckpt \[motionlab.models.net\]: unknown model 'builtins.open'"),
    ("eval-ckpt-crafted", lambda b, c: ["motionlab-eval", f"ckpt={c['crafted.ckpt']}"], r"unknown model 'builtins.open'"),
    ("export-ckpt-crafted", lambda b, c: ["motionlab-export", "onnx", f"ckpt={c['crafted.ckpt']}", "out=OUT.onnx"], r"unknown model 'builtins.open'"),
    ("cache-ckpt-crafted", lambda b, c: ["motionlab-cache", "descriptors", f"ckpt={c['crafted.ckpt']}"], r"unknown model 'builtins.open'"),
    ("lipsync-ckpt-crafted", lambda b, c: _lipsync(b, c, ckpt=c["crafted.ckpt"]), r"unknown model 'builtins.open'"),
    ("train-init-from-crafted", lambda b, c: _train(f"init_ckpt={c['crafted.ckpt']}"), r"crafted.ckpt holds a builtins.open .*not a animator_v1"),
    ("ckpt-crafted-target", lambda b, c: _animate(b, c, ckpt=c["targeted.ckpt"]), r"key '_target_' is not a plain argument name"),
    ("ckpt-wrong-task-animate", lambda b, c: _animate(b, c, ckpt=c["unet"]), r"is not an animation checkpoint"),
    ("ckpt-wrong-task-lipsync", lambda b, c: _lipsync(b, c, ckpt=c["animator"]), r"is not a lip-sync checkpoint \(its predictor is AnimatorPredictor\)"),
    ("ckpt-wrong-architecture", lambda b, c: _animate(b, c, ckpt=c["plain.pth"], arch="fomm_vox256"), r"(?s)plain.pth do not match FOMM:.*missing keys"),
    ("adapter-crafted", lambda b, c: _animate(b, c, lora_ckpt=c["crafted_adapter.safetensors"]), r"crafted_adapter.safetensors \[lora\]: unknown keys \['_target_'\]"),
    ("adapter-other-base", lambda b, c: _animate(b, c, ckpt=c["unet"], lora_ckpt=c["adapter.safetensors"]), r"adapter.safetensors was trained on base sha256"),
    ("profile-crafted", lambda b, c: ["motionlab-eval", f"ckpt={c['animator']}", f"profile={c['crafted_profile.json']}"],
     r"crafted_profile.json is not a motionlab identity profile"),
    ("eval-ckpt-missing", lambda b, c: ["motionlab-eval", f"ckpt={b['missing']}"], r"missing.file does not exist"),
    ("eval-lipsync-ckpt", lambda b, c: ["motionlab-eval", f"ckpt={c['unet']}"], r"is not an animation checkpoint"),
    ("cache-ckpt-truncated", lambda b, c: ["motionlab-cache", "descriptors", f"ckpt={c['truncated.ckpt']}"], r"truncated.ckpt cannot be read weights-only"),
    ("export-onnx-animator", lambda b, c: ["motionlab-export", "onnx", f"ckpt={c['animator']}", "out=OUT.onnx"], r"holds animator_v1: ONNX export serves models that declare their graphs"),
    ("export-fomm-unet", lambda b, c: ["motionlab-export", "fomm", f"ckpt={c['unet']}", "out=OUT.pth.tar"], r"only keypoint \(FOMM\) models export"),
    ("export-lora-not-lora", lambda b, c: ["motionlab-export", "lora", f"ckpt={c['animator']}", "out=OUT.safetensors"], r"(LoRA|adapter)"),
    # configs
    ("config-unknown-experiment", lambda b, c: ["motionlab-train", "experiment=no_such_experiment"], r"Could not find 'experiment/no_such_experiment'"),
    ("config-unknown-key", lambda b, c: _train("data.no_such_key=1"), r"no_such_key"),
    ("config-wrong-type", lambda b, c: _train("data.batch_size=many"), r"data.batch_size"),
    ("config-negative-batch", lambda b, c: _train("data.batch_size=-4"), r"'data.batch_size' is -4; it must be an integer >= 1"),
    ("config-negative-lr", lambda b, c: _train("model.optimizer.lr=-0.1"), r"'model.optimizer.lr' is -0.1; it must be a learning rate >= 0"),
    ("config-image-size", lambda b, c: _train("data.image_size=60"), r"'data.image_size' is 60; it must be a multiple of 8"),
    ("config-limit-zero", lambda b, c: _animate(b, c, **{"limits.max_video_frames": 0}), r"'limits.max_video_frames' is 0; it must be an integer >= 1"),
    ("config-missing-value", lambda b, c: ["motionlab-animate", f"ckpt={c['animator']}"], r"config key 'portrait' is required"),
    ("config-animate-batch-zero", lambda b, c: _animate(b, c, batch_size=0), r"batch_size=0: must be > 0"),
    ("config-animate-precision", lambda b, c: _animate(b, c, precision="fp16"), r"precision='fp16': expected one of \('fp32', 'bf16', 'int8'\)"),
    ("config-animate-fps-negative", lambda b, c: _animate(b, c, fps=-5), r"fps=-5: must be > 0"),
    ("config-lipsync-runtime", lambda b, c: _lipsync(b, c, runtime="tpu"), r"runtime must be auto, torch or onnx"),
    # output paths
    ("out-wrong-suffix", lambda b, c: _animate(b, c, out="OUT.txt"), r"out=.*out.txt: the output must end in .mp4"),
    ("out-is-a-folder", lambda b, c: _animate(b, c, out=b["dir"]), r"a_folder: the output must end in .mp4"),
    ("out-gif-suffix", lambda b, c: _animate(b, c, gif="OUT.png"), r"gif=.*out.png: the output must end in .gif"),
    ("app-runs-missing", lambda b, c: ["motionlab-app", f"runs={b['missing']}"], r"runs=.*missing.file is not a folder"),
    ("app-upload-limit-zero", lambda b, c: ["motionlab-app", f"runs={b['dir']}", "max_upload_mb=0"], r"max_upload_mb=0: must be > 0"),
    ("out-talking-over-other-folder", lambda b, c: ["motionlab-data", "talking", f"video={c['clip'] / 'toy_talk.mp4'}", f"out={b['dir'].parent}"],
     r"exists and is not a folder this command wrote"),
]


# every reader of a checkpoint, with each crafted stored config (STORED_VARIANTS): one line, exit 2, nothing run
STORED_READERS = {
    "animate": lambda b, c, f: _animate(b, c, ckpt=f),
    "eval": lambda b, c, f: ["motionlab-eval", f"ckpt={f}"],
    "eval-adapter": lambda b, c, f: ["motionlab-eval", f"ckpt={c['animator']}", f"adapter_ckpt={f}", f"drivers=[{b['driver']}]"],
    "export-onnx": lambda b, c, f: ["motionlab-export", "onnx", f"ckpt={f}", "out=OUT.onnx"],
    "export-fomm": lambda b, c, f: ["motionlab-export", "fomm", f"ckpt={f}", "out=OUT.pth.tar"],
    "cache": lambda b, c, f: ["motionlab-cache", "descriptors", f"ckpt={f}"],
    "lipsync": lambda b, c, f: _lipsync(b, c, ckpt=f),
    "train-init": lambda b, c, f: _train(f"init_ckpt={f}"),
    "train-resume": lambda b, c, f: _train(f"resume={f}"),
}
CASES += [
    (f"stored-{variant}-{reader}", lambda b, c, read=read, variant=variant: read(b, c, c[f"{variant}.ckpt"]), message)
    for variant, (_, message) in STORED_VARIANTS.items() for reader, read in STORED_READERS.items()
]
CASES += [
    ("stored-tensor-in-config", lambda b, c: _animate(b, c, ckpt=c["tensor_in_config.ckpt"]), r"'config.seed' is a Tensor, not a plain value"),
    ("eval-stored-target", lambda b, c: ["motionlab-eval", f"ckpt={c['target_data.ckpt']}"], r"'data._target_' is 'builtins.exec', which a stored config may not name"),
    ("eval-stored-nested-target", lambda b, c: ["motionlab-eval", f"ckpt={c['target_nested.ckpt']}"],
     r"'data.augmentation._target_' is 'os.system', which a stored config may not name"),
    ("eval-stored-args", lambda b, c: ["motionlab-eval", f"ckpt={c['args_data.ckpt']}"], r"'data._args_' is not allowed in a stored config"),
    ("eval-stored-partial", lambda b, c: ["motionlab-eval", f"ckpt={c['partial_data.ckpt']}"], r"'data._partial_' is not allowed in a stored config"),
    ("eval-stored-unknown-key", lambda b, c: ["motionlab-eval", f"ckpt={c['unknown_data_key.ckpt']}"],
     r"'data.no_such_parameter' is not a parameter of PortraitVideoDataModule"),
    ("eval-stored-no-data", lambda b, c: ["motionlab-eval", f"ckpt={c['no_data.ckpt']}"], r"carries no run config to rebuild its data from"),
    ("train-resume-truncated", lambda b, c: _train(f"resume={c['truncated.ckpt']}"), r"truncated.ckpt cannot be read weights-only"),
    ("train-resume-pickle", lambda b, c: _train(f"resume={_pickled_checkpoint(b)}"), r"evil.ckpt cannot be read weights-only"),
    ("train-resume-foreign", lambda b, c: _train(f"resume={c['no_motionlab_entry.ckpt']}"), r"is not a checkpoint motionlab-train wrote"),
    ("adapter-model-null", lambda b, c: _animate(b, c, lora_ckpt=c["adapter_model_null.safetensors"]), r"adapter metadata 'model' must be a dict, got 'None'"),
    ("adapter-model-number", lambda b, c: _animate(b, c, lora_ckpt=c["adapter_model_number.safetensors"]), r"adapter metadata 'model' must be a dict"),
    ("adapter-model-list", lambda b, c: _animate(b, c, lora_ckpt=c["adapter_model_list.safetensors"]), r"adapter metadata 'model' must be a dict"),
    ("adapter-lora-list", lambda b, c: _animate(b, c, lora_ckpt=c["adapter_lora_list.safetensors"]), r"adapter metadata 'lora' must be a dict"),
    ("adapter-alpha-text", lambda b, c: _animate(b, c, lora_ckpt=c["adapter_alpha_text.safetensors"]), r"lora.alpha must be a number > 0, got 'big'"),
    ("adapter-huge-rank", lambda b, c: _animate(b, c, lora_ckpt=c["adapter_huge_rank.safetensors"]), r"metadata says rank 1000000, but .*lora_A"),
    ("adapter-interpolation", lambda b, c: _animate(b, c, lora_ckpt=c["adapter_interp.safetensors"]), r"'model.name' holds the interpolation"),
    ("profile-nan-mean", lambda b, c: ["motionlab-eval", f"ckpt={c['animator']}", f"profile={c['profile_nan_mean.json']}"], r"'mean' holds NaN"),
    ("profile-empty-embeddings", lambda b, c: ["motionlab-eval", f"ckpt={c['animator']}", f"profile={c['profile_empty_embeddings.json']}"],
     r"'embeddings' must be a non-empty 2-d array"),
    ("profile-text-embeddings", lambda b, c: ["motionlab-eval", f"ckpt={c['animator']}", f"profile={c['profile_text_embeddings.json']}"],
     r"'embeddings' is not an array of numbers"),
    ("profile-interpolation", lambda b, c: ["motionlab-eval", f"ckpt={c['animator']}", f"profile={c['profile_interp_provenance.json']}"],
     r"'provenance.source' holds the interpolation"),
    ("onnx-text", lambda b, c: _lipsync(b, c, runtime="onnx", onnx=c["text.onnx"]), r"text.onnx is not a readable ONNX model"),
    ("onnx-truncated", lambda b, c: _lipsync(b, c, runtime="onnx", onnx=c["truncated.onnx"]), r"truncated.onnx is not a readable ONNX model"),
    ("onnx-external-traversal", lambda b, c: _lipsync(b, c, runtime="onnx", onnx=c["traversal.onnx"]), r"keeps its data in '../../../etc/passwd', outside"),
    ("onnx-other-weights", lambda b, c: _lipsync(b, c, runtime="onnx", onnx=c["untagged.onnx"]), r"untagged.onnx was exported from weights it does not name"),
    ("shard-pickled", lambda b, c: _train("data=clips_stream", f"data.root={_pickled_shards(b)}"), r"declare the serializer 'pickle'"),
    ("shard-overcounting-index", lambda b, c: _train("data=clips_stream", f"data.root={_damaged_shards(b, 'count')}"), r"chunk chunk-0-0.bin holds \d+ items, index.json says \d+"),
    ("shard-missing-chunk", lambda b, c: _train("data=clips_stream", f"data.root={_damaged_shards(b, 'chunk')}"), r"chunk chunk-0-0.bin listed in index.json is missing"),
    ("shard-out-is-root", lambda b, c: ["motionlab-data", "shard", f"root={b['driver'].parent}", f"out={b['driver'].parent}"], r"may not be, hold or lie inside root="),
    ("shard-out-foreign-folder", lambda b, c: ["motionlab-data", "shard", f"root={b['driver'].parent}", f"out={b['dir'].parent}"],
     r"exists and is not a shard folder this command wrote"),
    ("hydra-experimental-rerun", lambda b, c: ["motionlab-eval", f"--experimental-rerun={b['random.ckpt']}"], r"--experimental-rerun is disabled"),
    ("animate-unknown-key", lambda b, c: _animate(b, c, **{"+foo": 1}), r"config key 'foo' is not an option of motionlab-animate"),
    ("export-unknown-key", lambda b, c: ["motionlab-export", "onnx", f"ckpt={c['unet']}", "out=OUT.onnx", "+foo=1"], r"config key 'foo' is not an option of motionlab-export onnx"),
    ("lipsync-old-mode-key", lambda b, c: _lipsync(b, c, **{"+mode": "ave"}), r"config key 'mode' is not an option of motionlab-lipsync"),
    ("limits-unknown-key", lambda b, c: _animate(b, c, **{"+limits.max_pixels": 10}), r"config key 'limits.max_pixels' is not a limit"),
]


def _pickled_checkpoint(b) -> Path:
    path = b["dir"].parent / "evil.ckpt"
    if not path.is_file():
        import pickle

        path.write_bytes(pickle.dumps({"x": _Exec()}))
    return path


class _Exec:
    def __reduce__(self):
        return (exec, ("open('pwned', 'w')",))


def _pickled_shards(b) -> Path:
    """A litdata shard folder whose chunk holds a pickled object (litdata's "pickle" serializer)."""
    import litdata

    folder = b["dir"].parent / "pickled_shards"
    if not folder.is_dir():
        litdata.optimize(fn=_pickled_items, inputs=[0, 1], output_dir=str(folder), chunk_bytes="1MB", num_workers=1, verbose=False, start_method="fork")
    return folder


def _pickled_items(index: int):
    yield {"meta": _Exec()}


def _damaged_shards(b, how: str) -> Path:
    from motionlab.data.shards import write_clip_shards

    folder = b["dir"].parent / f"shards_{how}"
    if not folder.is_dir():
        write_clip_shards(b["driver"].parent, folder)
        index = json.loads((folder / "index.json").read_text())
        if how == "count":
            index["chunks"][0]["chunk_size"] += 5
            (folder / "index.json").write_text(json.dumps(index))
        else:
            (folder / index["chunks"][0]["filename"]).unlink()
    return folder


def _synctalk_features(b) -> Path:
    path = b["dir"].parent / "aud_ave.npy"  # no manifest: SyncTalk_2D's rows
    np.save(path, np.zeros((80, 512), np.float32))
    return path


@pytest.mark.parametrize("case_id, argv_of, message", CASES, ids=[case[0] for case in CASES])
def test_bad_input(case_id, argv_of, message, bad, checkpoints, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    argv = [str(a).replace("OUT", str(tmp_path / "out")) for a in argv_of(bad, checkpoints)]
    for suffix in (".mp4", ".json", ".onnx", ".safetensors", ".pth.tar"):
        (tmp_path / f"out{suffix}").write_bytes(SENTINEL)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, _, err = run_command(argv)
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and re.search(message, err), err[-2000:]
    report = err[err.find(": error: "):].strip().splitlines() if ": error: " in err else []
    assert len(report) <= 2, err[-2000:]  # the message and at most one line of what to do
    for suffix in (".mp4", ".json", ".onnx", ".safetensors", ".pth.tar"):
        assert (tmp_path / f"out{suffix}").read_bytes() == SENTINEL  # a previous output is never replaced by a failed run
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.name not in before and p.is_file())
    assert left == [], left  # no partial output, no temporary file, no run folder of a failed start
    assert not (checkpoints["crafted.ckpt"].parent / "pwned").exists()  # nothing a checkpoint named was run
    assert not (tmp_path / "pwned").exists()


def test_cases_cover_every_command(bad, checkpoints):
    assert len(CASES) >= 40 and {argv_of(bad, checkpoints)[0] for _, argv_of, _ in CASES} == set(COMMANDS)


def test_cli_exit_code_in_a_process(tmp_path, bad, monkeypatch):
    """The same reporting from an installed console script: exit 2, one line, no traceback; with MOTIONLAB_DEBUG=1
    the traceback too."""
    args = ["motionlab-animate", f"ckpt={bad['missing']}", f"portrait={bad['portrait']}", f"driver={bad['driver']}", "out=x.mp4"]
    env = {k: v for k, v in subprocess_env(tmp_path).items() if k != "HYDRA_FULL_ERROR"}
    result = subprocess.run([motionlab_bin(args[0]), *args[1:]], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        f"motionlab-animate: error: checkpoint {bad['missing']} does not exist; give the path of a .ckpt written by motionlab-train"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    monkeypatch.setenv("MOTIONLAB_DEBUG", "1")
    code, _, err = run_command(args)
    assert code == 1 and "Traceback" in err and "does not exist" in err


def test_images_of_every_mode_convert(tmp_path):
    """16-bit grey is scaled (not clipped to white), transparency composited on white, grey and palette to RGB."""
    from motionlab.data.video_io import read_image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "grey16.png")
    image = read_image(tmp_path / "grey16.png")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert image[0, 0, 0] == 0 and image[-1, -1, 0] == 255 and 100 < image[32, 0, 0] < 155  # a ramp, not a white image
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (read_image(tmp_path / "clear.png") == 255).all()
    Image.new("L", (4, 4), 90).save(tmp_path / "grey.png")
    Image.new("P", (4, 4), 3).save(tmp_path / "palette.png")
    assert (read_image(tmp_path / "grey.png") == 90).all() and read_image(tmp_path / "palette.png").shape == (4, 4, 3)
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "one.png")
    assert read_image(tmp_path / "one.png").tolist() == [[[10, 20, 30]]]


RUN_DIR = """
import motionlab
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
with initialize_config_module("motionlab.conf", version_base="1.3"):
    cfg = compose("train", ["experiment=quickstart"], return_hydra_config=True)
print(OmegaConf.select(cfg, "hydra.run.dir"))
"""


def test_runs_started_together_get_their_own_folders(tmp_path):
    """Two processes started in the same second resolve different run folders (the time, then the process id)."""
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", RUN_DIR], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
             for _ in range(2)]
    dirs = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        dirs.append(out.strip().splitlines()[-1])
    assert dirs[0] != dirs[1] and all(f"_{proc.pid}" in d for proc, d in zip(procs, dirs)), dirs
