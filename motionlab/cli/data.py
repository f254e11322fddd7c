"""``motionlab-data {synth,talking,synth-talking,profile,shard,face-labels} key=value ...``: data preparation (see conf/data_*.yaml)."""

from __future__ import annotations

from omegaconf import DictConfig

from motionlab.cli.app import command_options, dispatch


def _synth(cfg: DictConfig) -> None:
    from motionlab.data.synthetic import ToyWorldSpec, generate_toy_world

    options = command_options(cfg)
    out = options.pop("out")
    spec = ToyWorldSpec(**options)
    root = generate_toy_world(out, spec, progress=True)
    print(f"wrote {spec.identities} identities x {spec.frames} frames at {spec.size}px to {root}")


def _talking(cfg: DictConfig) -> None:
    from motionlab.data.talking import preprocess_talking_video

    options = command_options(cfg)
    summary = preprocess_talking_video(options["video"], options["out"], fps=options["fps"], smooth_window=options["smooth_window"], progress=True)
    print(
        f"wrote {summary['frames']} frames at {summary['fps']:g} fps (source {summary['source_fps']:g} fps), "
        f"{summary['audio_seconds']:.2f} s of 16 kHz audio and landmarks to {options['out']}; "
        f"frames without a face: {summary['frames_without_face']}"
    )
    if options["audio_encoder_ckpt"] is not None:
        from motionlab.data.lipsync import TalkingClip, audio_features

        features = audio_features(TalkingClip(options["out"], fps=options["fps"], convention=options["convention"]), "ave", options["audio_encoder_ckpt"])
        print(f"wrote {options['convention']} ave audio features {tuple(features.shape)} to {options['out']}/aud_ave.npy")


def _synth_talking(cfg: DictConfig) -> None:
    from motionlab.data.talking import synth_talking_clip

    options = command_options(cfg)
    summary = synth_talking_clip(options["out"], seconds=options["seconds"], size=options["size"], seed=options["seed"])
    print(f"wrote a toy talking head: {summary['frames']} frames at {summary['fps']:g} fps, {summary['size']}px, to {options['out']}")


def _profile(cfg: DictConfig) -> None:
    from motionlab.metrics.profile import build_profile, write_profile

    options = command_options(cfg)
    out = options.pop("out")
    profile = build_profile(**options)
    path = write_profile(profile, out)
    print(f"wrote {path}: {profile.name}, {len(profile.frames)} of {profile.frame_count} frames, {profile.embedder} embeddings "
          f"({len(profile.mean)}-d), spread {profile.spread:.4f}, frames without a face {profile.frames_without_face}")


def _shard(cfg: DictConfig) -> None:
    from motionlab.data.shards import write_clip_shards

    options = command_options(cfg)
    manifest = write_clip_shards(options["root"], options["out"], layout=options["layout"], chunk_bytes=options["chunk_bytes"])
    print(f"wrote {len(manifest['clips'])} clips ({manifest['items']} items, layout {manifest['layout']}) as litdata shards to "
          f"{options['out']}; train from them with data=clips_stream data.root={options['out']}")


def _face_labels(cfg: DictConfig) -> None:
    from motionlab.data.landmarks import write_face_labels

    options = command_options(cfg)
    for summary in write_face_labels(options["root"], layout=options["layout"], smooth_window=options["smooth_window"]):
        print(f"wrote {summary['labels']}: {summary['frames']} frames, {summary['without_face']} without a face")


def main() -> None:
    dispatch("motionlab-data", {"synth": ("data_synth", _synth), "talking": ("data_talking", _talking),
                                "synth-talking": ("data_synth_talking", _synth_talking), "profile": ("data_profile", _profile),
                                "shard": ("data_shard", _shard), "face-labels": ("data_face_labels", _face_labels)})

if __name__ == "__main__":
    main()
