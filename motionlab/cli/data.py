"""``motionlab-data``: data preparation commands.

    motionlab-data synth --out DIR --identities N --frames T --size S --seed X
    motionlab-data talking VIDEO --out DIR [--fps 25] [--smooth 3] [--audio-encoder CKPT]
    motionlab-data synth-talking --out DIR [--seconds 4] [--size 256] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from motionlab.data.synthetic import ToyWorldSpec, generate_toy_world


def _synth(args: argparse.Namespace) -> int:
    spec = ToyWorldSpec(
        identities=args.identities, frames=args.frames, size=args.size, seed=args.seed,
        translation=args.translation, rotation=args.rotation, scale=args.scale,
    )
    root = generate_toy_world(args.out, spec, progress=True)
    print(f"wrote {spec.identities} identities x {spec.frames} frames at {spec.size}px to {root}")
    return 0


def _talking(args: argparse.Namespace) -> int:
    from motionlab.data.talking import preprocess_talking_video

    summary = preprocess_talking_video(args.video, args.out, fps=args.fps, smooth_window=args.smooth, progress=True)
    print(
        f"wrote {summary['frames']} frames at {summary['fps']:g} fps (source {summary['source_fps']:g} fps), "
        f"{summary['audio_seconds']:.2f} s of 16 kHz audio and landmarks to {args.out}; "
        f"frames without a face: {summary['frames_without_face']}"
    )
    if args.audio_encoder is not None:
        from motionlab.data.lipsync import TalkingClip, audio_features

        features = audio_features(TalkingClip(args.out, fps=args.fps), "ave", args.audio_encoder)
        print(f"wrote ave audio features {tuple(features.shape)} to {args.out}/aud_ave.npy")
    return 0


def _synth_talking(args: argparse.Namespace) -> int:
    from motionlab.data.talking import synth_talking_clip

    summary = synth_talking_clip(args.out, seconds=args.seconds, size=args.size, seed=args.seed)
    print(f"wrote a toy talking head: {summary['frames']} frames at {summary['fps']:g} fps, {summary['size']}px, to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="motionlab-data", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="render a toy world of procedural characters in the seed layout")
    defaults = ToyWorldSpec()
    synth.add_argument("--out", required=True, help="output folder (created; must be empty)")
    synth.add_argument("--identities", type=int, default=defaults.identities)
    synth.add_argument("--frames", type=int, default=defaults.frames, help="frames per driver clip")
    synth.add_argument("--size", type=int, default=defaults.size, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=defaults.seed)
    synth.add_argument("--translation", type=float, default=defaults.translation, help="head translation amplitude (canvas units)")
    synth.add_argument("--rotation", type=float, default=defaults.rotation, help="in-plane rotation amplitude (radians)")
    synth.add_argument("--scale", type=float, default=defaults.scale, help="relative scale amplitude")
    synth.set_defaults(run=_synth)
    talking = commands.add_parser("talking", help="preprocess a talking-head video into the SyncTalk_2D layout")
    talking.add_argument("video", help="input video with an audio stream")
    talking.add_argument("--out", required=True, help="output folder")
    talking.add_argument("--fps", type=float, default=25.0, help="output frame rate")
    talking.add_argument("--smooth", type=int, default=3, help="landmark smoothing window in frames (1: off)")
    talking.add_argument("--audio-encoder", default=None, help="an ave audio encoder checkpoint: also write aud_ave.npy (cached by its hash)")
    talking.set_defaults(run=_talking)
    toy = commands.add_parser("synth-talking", help="render a toy talking head whose mouth follows synthetic speech")
    toy.add_argument("--out", required=True)
    toy.add_argument("--seconds", type=float, default=4.0)
    toy.add_argument("--size", type=int, default=256)
    toy.add_argument("--seed", type=int, default=0)
    toy.set_defaults(run=_synth_talking)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, FileExistsError, FileNotFoundError, RuntimeError) as error:
        print(f"motionlab-data {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
