"""Lip-sync video against SyncTalk_2D's loop on the same files."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import _cache_dir, alternating_medians, benchmark, counted_flops, native_bf16
from benchmarks.roofline import measured_peaks


def _lipsync_template(cache_root: str) -> Path:
    """The preprocessed real clip when present (``motionlab-data talking video=... out=data/talking/human_talk_d6``), else a toy talking head at 512 px."""
    real = Path("data/talking/human_talk_d6")
    if (real / "full_body_img").is_dir():
        return real
    from motionlab.data.talking import synth_talking_clip

    toy = Path(cache_root) / "toy_talk_512"
    if not (toy / "done").is_file():
        synth_talking_clip(toy, seconds=4.0, size=512, seed=0)
        (toy / "done").write_text("")
    return toy


@benchmark("lipsync_video")
def lipsync_video(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Lip-sync video end to end (decode, crop, U-Net, paste back, H.264 + AAC mux) on SyncTalk_2D-format weights: SyncTalk_2D's
    own inference loop (BGR, its audio padding and bounce, batch 1) vs motionlab's pipeline (``synctalk_2d`` convention,
    onnxruntime and eager PyTorch, batch 8, threads overlapping decode / model / encode): their frames, then their speed."""
    import soundfile

    from benchmarks.synctalk_reference import synctalk_aud_ave, synctalk_reference_loop, synctalk_template_indices
    from motionlab.data.audio import load_wav
    from motionlab.data.lipsync import speech_features
    from motionlab.data.talking import crop_box, frame_box
    from motionlab.inference.export import export_onnx, onnx_source
    from motionlab.inference.lipsync import LipSyncPipeline
    from motionlab.models import create_model
    from motionlab.tasks import load_predictor
    from motionlab.utils.onnx_files import OnnxRunner, tag_source

    cache_root = Path(_cache_dir()) / "lipsync-bench"
    template = _lipsync_template(str(cache_root))
    seconds = max(2.0, args.steps / 5)  # 20 steps: 4 s, 99 frames
    cache_root.mkdir(parents=True, exist_ok=True)
    wav_path = cache_root / "speech.wav"
    soundfile.write(wav_path, load_wav(template / "aud.wav")[: int(seconds * 16000)], 16000)
    wav = load_wav(wav_path)
    torch.manual_seed(0)  # SyncTalk_2D-format files of an untrained U-Net and ave encoder: the format is what is measured
    unet_file, encoder_file = cache_root / "unet_synctalk.pth", cache_root / "audio_visual_encoder.pth"
    torch.save(create_model("lipsync_unet328_ave").state_dict(), unet_file)
    torch.save({k.removeprefix("audio_encoder."): v for k, v in create_model("lipsync_audio_encoder_ave").state_dict().items()}, encoder_file)
    predictor = load_predictor(unet_file, model="lipsync_unet328_ave", audio_encoder_ckpt=encoder_file)
    net, encoder = predictor.net, predictor.audio_encoder
    reference_features = synctalk_aud_ave(encoder, wav_path)
    ours = speech_features(encoder, wav, predictor.convention).numpy()
    frames = len(reference_features)
    results = [(f"template: {template} ({'real' if 'human' in str(template) else 'toy'}), {frames} frames, convention {predictor.convention.name}", float(frames), "frames"),
               ("aud_ave.npy rows: max abs difference, motionlab vs SyncTalk_2D's writer", float(np.abs(ours - reference_features).max()) if ours.shape == reference_features.shape else float("nan"), "")]

    reference_seconds, kept = synctalk_reference_loop(net, reference_features, wav, template, cache_root / "reference.mp4")
    results.append(("SyncTalk_2D inference loop (batch 1, eager, BGR, MJPG + mux)", frames / reference_seconds, "frames/s"))
    # frame fidelity: motionlab's first frames against the loop's, inside the paste box (outside, both are the template)
    pipeline = LipSyncPipeline(predictor, batch_size=8, feather=0)
    _, produced = pipeline.frames(template, wav)
    worst, differing = 0.0, 0
    count = len(list((template / "full_body_img").glob("*.jpg")))
    for index, (reference, *_), frame in zip(synctalk_template_indices(len(kept), count), kept, produced):
        x0, y0, x1, y1 = frame_box(crop_box(np.loadtxt(str(template / "landmarks" / f"{index}.lms"))), frame, "clip")
        difference = np.abs(reference[y0:y1, x0:x1].astype(np.int16) - frame[y0:y1, x0:x1].astype(np.int16))
        worst, differing = max(worst, float(difference.max()) / 255.0), differing + int((difference > 0).sum())
    results += [(f"paste box, first {len(kept)} frames: max abs difference, motionlab vs SyncTalk_2D (0-1 scale)", worst, ""),
                ("  pixel values that differ", float(differing), "values")]
    onnx_path = export_onnx(net, cache_root / "unet_ave.onnx")
    tag_source(onnx_path, onnx_source(unet_file))  # motionlab-lipsync onnx= takes only a graph that names its weights
    onnx = OnnxRunner(onnx_path, threads=torch.get_num_threads(), spinning=False)  # as motionlab-lipsync runs it
    difference = max(float(np.abs(onnx(image[None].numpy(), audio[None].numpy())[0] - output.numpy()).max()) for _, image, audio, output in kept)
    for label, runner in (("onnxruntime", onnx), ("eager PyTorch, channels_last", None)):
        predictor.runner = runner  # None: the eager network
        pipeline = LipSyncPipeline(predictor.to("cpu"), batch_size=8, feather=0)
        started = time.perf_counter()
        summary = pipeline.run(template, wav_path, cache_root / f"motionlab_{label.split()[0]}.mp4")
        rate = summary["frames"] / (time.perf_counter() - started)
        results += [(f"motionlab-lipsync, {label}, batch 8", rate, "frames/s"), (f"  speed-up over the SyncTalk_2D loop ({label})", rate * reference_seconds / frames, "x")]
    results.append(("U-Net max abs difference, onnxruntime vs the loop's eager outputs (1e6 x)", difference * 1e6, "1e-6"))
    # whole commands on 6 s of speech, start-up included: SyncTalk_2D's feature writer + inference script as one process
    # against motionlab-lipsync (its ONNX file exported beforehand, as after a first run), alternating, median of 3
    import subprocess
    import sys

    long_wav = cache_root / "speech_6s.wav"
    soundfile.write(long_wav, np.resize(load_wav(template / "aud.wav"), 6 * 16000), 16000)

    def command_seconds(argv: list[str]) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            return time.perf_counter() - started
        return run

    from motionlab.inference.precision import unsupported

    motionlab_argv = [sys.executable, "-m", "motionlab.cli.lipsync", f"ckpt={unet_file}", "arch=lipsync_unet328_ave", f"audio_encoder_ckpt={encoder_file}",
                      f"template={template}", f"audio={long_wav}", "feather=0", f"out={cache_root / 'motionlab_6s.mp4'}", f"onnx={onnx_path}"]
    runs = {"reference": command_seconds([sys.executable, "-m", "benchmarks.synctalk_reference", str(unet_file), str(encoder_file), str(template),
                                          str(long_wav), str(cache_root / "reference_6s.mp4")]),
            "motionlab": command_seconds(motionlab_argv)}
    int8_note = unsupported("int8")
    if int8_note is None:
        # precision=int8 as after a first run: its graph, quantized on the run's first frames, cached beside the fp32 one
        int8_argv = [*motionlab_argv[:-2], f"out={cache_root / 'motionlab_6s_int8.mp4'}", f"onnx={onnx_path}", "precision=int8"]
        first = subprocess.run(int8_argv, check=True, capture_output=True, text=True)
        int8_note = first.stdout.strip().splitlines()[-1]
        runs["int8"] = command_seconds(int8_argv)
    commands = alternating_medians(runs)
    results += [("SyncTalk_2D, whole commands (features + inference), 6 s of speech", commands["reference"], "s"),
                ("motionlab-lipsync, whole command, same files", commands["motionlab"], "s"),
                ("  speed-up over SyncTalk_2D (whole command, 6 s)", commands["reference"] / commands["motionlab"], "x")]
    if "int8" in commands:
        results += [(f"motionlab-lipsync precision=int8, whole command ({int8_note.split('(', 1)[-1].split(')')[0]})", commands["int8"], "s"),
                    ("  speed-up over SyncTalk_2D (whole command, 6 s, int8)", commands["reference"] / commands["int8"], "x")]
    else:
        results.append((f"precision=int8 whole command: not run, {int8_note}", float("nan"), ""))
    # the roofline: no fp32 pipeline outruns its U-Net computed at the machine's convolution peak
    _, image, audio, _ = kept[0]
    ceiling = measured_peaks()["conv fp32"] * 1e9 / counted_flops(lambda: net(image[None], audio[None]))
    loop_rate = frames / reference_seconds
    results += [("6x the SyncTalk_2D loop would need", 6 * loop_rate, "frames/s"),
                ("the U-Net alone at the measured fp32 convolution peak (roofline ceiling)", ceiling, "frames/s"),
                ("  ceiling of the speed-up over the loop", ceiling / loop_rate, "x")]
    return results


@benchmark("wav2lip_video")
def wav2lip_video_bench(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """Wav2Lip on a release-layout generator file (random weights) and a real talking clip (a toy clip without
    ../shared): the release's crop / model / paste loop (benchmarks/wav2lip_reference.py: BGR, batch 128) against
    motionlab's (:func:`motionlab.inference.wav2lip.wav2lip_frames`, batch 16), alternating, median of 3, on the same
    decoded frames, mel windows and face boxes (detection excluded on both sides); then how far their frames differ."""
    from benchmarks.common import SHARED_REAL
    from benchmarks.wav2lip_reference import wav2lip_reference_loop
    from motionlab.data.audio import load_wav, melspectrogram
    from motionlab.data.video_io import open_clip
    from motionlab.inference.wav2lip import FaceBoxes, release_crop_boxes, wav2lip_frames, wav2lip_mel_windows
    from motionlab.models import create_model
    from motionlab.tasks import load_predictor

    cache_root = Path(_cache_dir()) / "wav2lip-bench"
    cache_root.mkdir(parents=True, exist_ok=True)
    release = cache_root / "wav2lip-random.pth"
    if not release.is_file():
        torch.manual_seed(0)
        torch.save({"state_dict": {f"module.{k}": v for k, v in create_model("wav2lip96").state_dict().items()}}, release)
    video, audio = SHARED_REAL / "drivers" / "human_talk_d6.mp4", SHARED_REAL / "audio" / "speech_eng.wav"
    if video.is_file():
        inputs, fps = "real human_talk_d6 + speech_eng", open_clip(video).fps
        count = max(16, args.steps * 2)
        frames = open_clip(video).get(range(count))
        mels = wav2lip_mel_windows(melspectrogram(load_wav(audio)), fps)[:count]
    else:
        from motionlab.data.talking import synth_talking_clip

        toy = cache_root / "toy"
        if not (toy / "done").is_file():
            synth_talking_clip(toy, seconds=4.0, size=256, seed=0)
            (toy / "done").write_text("")
        from motionlab.data.video_io import list_frame_files, read_image

        inputs, fps = "toy talking head", 25.0
        frames = np.stack([read_image(f) for f in list_frame_files(toy / "full_body_img")])
        mels = wav2lip_mel_windows(melspectrogram(load_wav(toy / "aud.wav")), fps)[: len(frames)]
    boxes = release_crop_boxes(frames, FaceBoxes(), inputs)
    predictor = load_predictor(release, model="wav2lip96")
    reference = create_model("wav2lip96", ckpt=release).eval()
    bgr = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    ours: list[np.ndarray] = []
    theirs: list[np.ndarray] = []

    def reference_loop() -> float:
        started = time.perf_counter()
        theirs[:] = wav2lip_reference_loop(reference, bgr, mels[:, 0].numpy(), boxes)
        return len(mels) / (time.perf_counter() - started)

    def motionlab_loop() -> float:
        started = time.perf_counter()
        ours[:] = list(wav2lip_frames(predictor, frames, mels, boxes, 16))
        return len(mels) / (time.perf_counter() - started)

    loops = alternating_medians({"reference": reference_loop, "motionlab": motionlab_loop})
    difference = max(int(np.abs(a.astype(int) - b[..., ::-1].astype(int)).max()) for a, b in zip(ours, theirs))
    return [(f"inputs: {inputs}, {len(mels)} frames, {torch.get_num_threads()} threads", float(len(mels)), "frames"),
            ("Wav2Lip inference loop (batch 128, eager)", loops["reference"], "frames/s"),
            ("motionlab Wav2Lip path, same frames (batch 16)", loops["motionlab"], "frames/s"),
            ("  speed-up over Wav2Lip's loop", loops["motionlab"] / loops["reference"], "x"),
            ("  max abs difference from Wav2Lip's frames (uint8 levels)", float(difference), "levels")]


def _stand_in_unet(args: argparse.Namespace, speech_name: str):
    """(cache folder, the toy template, a speech file cut from its audio, the predictor of a SyncTalk_2D-layout U-Net
    with random weights saved as the release files are)."""
    import soundfile

    from motionlab.data.audio import load_wav
    from motionlab.models import create_model
    from motionlab.tasks import load_predictor

    cache_root = Path(_cache_dir()) / "lipsync-bench"
    cache_root.mkdir(parents=True, exist_ok=True)
    template = _lipsync_template(str(cache_root))
    wav_path = cache_root / speech_name
    soundfile.write(wav_path, load_wav(template / "aud.wav")[: int(max(2.0, args.steps / 5) * 16000)], 16000)
    torch.manual_seed(0)
    unet_file, encoder_file = cache_root / "unet_synctalk.pth", cache_root / "audio_visual_encoder.pth"
    torch.save(create_model("lipsync_unet328_ave").state_dict(), unet_file)
    torch.save({k.removeprefix("audio_encoder."): v for k, v in create_model("lipsync_audio_encoder_ave").state_dict().items()}, encoder_file)
    return cache_root, template, wav_path, load_predictor(unet_file, model="lipsync_unet328_ave", audio_encoder_ckpt=encoder_file)


@benchmark("lipsync_batch")
def lipsync_batch(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """motionlab-lipsync's default batch: the pipeline (onnxruntime, as the command runs it) at batch 1, 4 and 8 on the
    same template and speech, alternating, medians of 3: the smallest batch as fast as the largest is the default."""
    from motionlab.inference.export import export_onnx
    from motionlab.inference.lipsync import LipSyncPipeline
    from motionlab.utils.onnx_files import OnnxRunner

    cache_root, template, wav_path, predictor = _stand_in_unet(args, "speech_batch.wav")
    predictor.runner = OnnxRunner(export_onnx(predictor.net, cache_root / "unet_ave.onnx"), threads=torch.get_num_threads(), spinning=False)

    def rate(batch: int) -> Callable[[], float]:
        def run() -> float:
            started = time.perf_counter()
            frames = LipSyncPipeline(predictor, batch_size=batch).run(template, wav_path, cache_root / f"batch_{batch}.mp4")["frames"]
            return frames / (time.perf_counter() - started)

        return run

    medians = alternating_medians({str(batch): rate(batch) for batch in (1, 4, 8)})
    rows = [(f"motionlab-lipsync pipeline, onnxruntime, batch {batch}", value, "frames/s") for batch, value in medians.items()]
    return rows + [(f"  batch {batch} over batch 8", medians[batch] / medians["8"], "x") for batch in ("1", "4")]


@benchmark("lipsync_precision")
def lipsync_precision(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """precision=int8 and bf16 against fp32 for the SyncTalk_2D-layout U-Net: the pipeline (batch 1, as
    motionlab-lipsync runs it) on the same template and speech with the fp32 graph and the int8 graph quantized on the
    run's first frames (onnxruntime), and the eager network in fp32 and in bf16 autocast (PyTorch), alternating, medians
    of 3, each pair where this CPU computes its reduced mode in SIMD; with each reduced mode's mouth-region PSNR against
    fp32 (random weights: a structural stand-in, so the PSNR says how the network rounds, not how a trained model does)."""
    from motionlab.data.audio import load_wav
    from motionlab.inference.export import export_onnx
    from motionlab.inference.lipsync import CALIBRATION_FRAMES, LipSyncPipeline
    from motionlab.inference.precision import unsupported
    from motionlab.tasks.lipsync_predictor import MOUTH_REGION
    from motionlab.utils.machine import cpu_profile
    from motionlab.utils.onnx_files import OnnxRunner, quantize_int8

    cache_root, template, wav_path, predictor = _stand_in_unet(args, "speech_int8.wav")
    pipeline = LipSyncPipeline(predictor, batch_size=1)
    samples = pipeline.calibration_inputs(template, load_wav(wav_path), None, CALIBRATION_FRAMES)
    rows, cols = MOUTH_REGION

    def eager(inputs: dict, dtype: torch.dtype | None) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            return predictor.net(torch.from_numpy(inputs["image"]).contiguous(memory_format=torch.channels_last), torch.from_numpy(inputs["audio"])).float().numpy()

    def psnr(reference, candidate) -> float:
        mse = np.mean([np.mean((a[:, :, rows, cols].clip(0, 1) - b[:, :, rows, cols].clip(0, 1)) ** 2) for a, b in zip(reference, candidate)])
        return float(10 * np.log10(1 / max(mse, 1e-12)))

    # each reduced mode beside its fp32 runtime, where this CPU computes it in SIMD (emulated bf16 would take hours)
    modes: dict[str, tuple] = {}
    results: list[tuple[str, float, str]] = []
    if unsupported("int8") is None:
        fp32_path = export_onnx(predictor.net, cache_root / "unet_ave.onnx")
        started = time.perf_counter()
        int8_path = quantize_int8(fp32_path, cache_root / "unet_ave.int8.onnx", samples, "bench", cpu_profile().int8_reduce_range)
        quantize_seconds = time.perf_counter() - started
        runners = {name: OnnxRunner(path, threads=torch.get_num_threads(), spinning=False) for name, path in (("fp32", fp32_path), ("int8", int8_path))}
        modes.update({"onnxruntime fp32": (runners["fp32"], None), "onnxruntime int8": (runners["int8"], None)})
        int8_psnr = psnr([runners["fp32"](*s.values()) for s in samples], [runners["int8"](*s.values()) for s in samples])
    if unsupported("bf16") is None:
        modes.update({"PyTorch fp32": (None, None), "PyTorch bf16 autocast": (None, torch.bfloat16)})
        bf16_psnr = psnr([eager(s, None) for s in samples], [eager(s, torch.bfloat16) for s in samples])

    def rate(name: str) -> Callable[[], float]:
        def run() -> float:
            predictor.runner, predictor.autocast = modes[name]
            started = time.perf_counter()
            frames = pipeline.run(template, wav_path, cache_root / "precision.mp4")["frames"]
            return frames / (time.perf_counter() - started)

        return run

    medians = alternating_medians({name: rate(name) for name in modes}) if modes else {}
    results += [(f"motionlab-lipsync pipeline, batch 1, {name}", value, "frames/s") for name, value in medians.items()]
    cpu = cpu_profile()
    if "onnxruntime int8" in medians:
        kind = "native int8 dot products" if cpu.native_int8 else "AVX2 byte multiply-add, 7-bit weights"
        results += [(f"  int8 over onnxruntime fp32 ({kind})", medians["onnxruntime int8"] / medians["onnxruntime fp32"], "x"),
                    ("  int8 mouth-region PSNR against fp32 (random weights)", int8_psnr, "dB"),
                    (f"  quantization, {len(samples)} calibration frames", quantize_seconds, "s")]
    else:
        results.append((f"precision=int8: not run, {unsupported('int8')}", float("nan"), ""))
    if "PyTorch bf16 autocast" in medians:
        results += [("  bf16 over PyTorch fp32 (native bf16)", medians["PyTorch bf16 autocast"] / medians["PyTorch fp32"], "x"),
                    ("  bf16 mouth-region PSNR against fp32 (random weights)", bf16_psnr, "dB")]
    else:
        results.append((f"precision=bf16: not run, {unsupported('bf16')}", float("nan"), ""))
    return results


@benchmark("musetalk_realtime")
def musetalk_realtime(args: argparse.Namespace) -> list[tuple[str, float, str]]:
    """MuseTalk 1.5 at the release's sizes (random weights: speed does not depend on them) on a real talking clip: the
    avatar's preparation per template frame (dlib landmarks, two VAE encodes, BiSeNet parsing), then the realtime path
    from the prepared avatar (U-Net step, VAE decode, blend; batch 8, the release's default), median of 3; its FLOPs per
    frame against the measured fp32 convolution peak. motionlab-lipsync runs the same functions."""
    from benchmarks.common import SHARED_REAL
    from motionlab.data.audio import load_wav
    from motionlab.data.video_io import open_clip
    from motionlab.inference.musetalk import BLEND_BLUR, EXTRA_MARGIN, musetalk_frames, prepare_avatar
    from motionlab.models.registry import build
    from motionlab.tasks.musetalk_predictor import MuseTalkPredictor

    video, audio = SHARED_REAL / "drivers" / "human_talk_d6.mp4", SHARED_REAL / "audio" / "speech_eng.wav"
    if video.is_file():
        inputs, frames, wav = "real human_talk_d6 + speech_eng", open_clip(video).get(range(8)), load_wav(audio)[: 16000 * 4]
    else:
        from motionlab.data.talking import synth_talking_clip
        from motionlab.data.video_io import list_frame_files, read_image

        toy = Path(_cache_dir()) / "musetalk-bench" / "toy"
        if not (toy / "done").is_file():
            synth_talking_clip(toy, seconds=4.0, size=256, seed=0)
            (toy / "done").write_text("")
        inputs, frames, wav = "toy talking head", np.stack([read_image(f) for f in list_frame_files(toy / "full_body_img")[:8]]), load_wav(toy / "aud.wav")
    torch.manual_seed(0)
    net = build("musetalk_v15", {}).eval()
    predictor = MuseTalkPredictor(net)
    windows = predictor.audio_windows(wav, 25.0)[:8]
    settings = {"bbox_shift": 0, "extra_margin": EXTRA_MARGIN, "parsing_mode": "jaw", "blend": "realtime"}
    started = time.perf_counter()
    avatar = prepare_avatar(predictor, frames, inputs, settings)
    prepare_rate = len(frames) / (time.perf_counter() - started)

    def realtime() -> float:
        started = time.perf_counter()
        count = sum(1 for _ in musetalk_frames(predictor, avatar, windows, 8))
        return count / (time.perf_counter() - started)

    def realtime_bf16() -> float:
        predictor.autocast = torch.bfloat16
        try:
            return realtime()
        finally:
            predictor.autocast = None

    bf16 = native_bf16()
    rates = alternating_medians({"fp32": realtime, **({"bf16": realtime_bf16} if bf16 else {})})
    rate = rates["fp32"]
    with torch.inference_mode():
        flops = counted_flops(lambda: net.decode(net(avatar.latents[:1], windows[:1])))
    peak = measured_peaks()["conv fp32"]
    reduced = []
    if bf16:
        reference = predictor.faces(avatar.latents[:4], windows[:4])
        predictor.autocast = torch.bfloat16
        candidate = predictor.faces(avatar.latents[:4], windows[:4])
        predictor.autocast = None
        lower = (reference[..., 128:, :] - candidate[..., 128:, :]) / 2
        psnr = float(10 * torch.log10(1 / lower.clamp(-1, 1).pow(2).mean()))
        reduced = [("MuseTalk realtime path, precision=bf16 (PyTorch autocast, AMX / AVX512-BF16)", 1 / rates["bf16"], "s/frame"),
                   ("  speed-up over fp32", rates["bf16"] / rate, "x"),
                   ("  lower-face PSNR against fp32, first 4 frames (gate: 40 dB)", psnr, "dB")]
    return [(f"inputs: {inputs}, {len(frames)} template frames, {len(windows)} output frames, {torch.get_num_threads()} threads", float(len(windows)), "frames"),
            ("MuseTalk avatar preparation (landmarks, VAE encodes, parsing; blur " + str(BLEND_BLUR['realtime']) + ")", 1 / prepare_rate, "s/template frame"),
            ("MuseTalk realtime path from the avatar (U-Net + VAE decode + blend, batch 8, eager fp32)", 1 / rate, "s/frame"),
            ("  U-Net + VAE decoder per frame", flops / 1e9, "GFLOP"),
            ("  achieved", flops * rate / 1e9, "GFLOP/s"),
            ("  at the measured fp32 convolution peak (roofline floor)", flops / (peak * 1e9), "s/frame"), *reduced]
