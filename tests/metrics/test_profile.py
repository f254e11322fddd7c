"""Identity profiles and CSIM: real dlib / EfficientNet embeddings on real files, JSON round trip, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from motionlab.data.video_io import open_clip
from motionlab.metrics.identity import FaceEmbedder
from motionlab.metrics.profile import build_profile, read_profile, write_profile

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not (REAL / "drivers").is_dir(), reason="../shared/data/real is not here (CI and developer checkouts have it)")


def test_profile_round_trips_through_json(toy_world, tmp_path):
    profile = build_profile(toy_world / "id_0000_video", max_frames=4, embedder="image")
    assert profile.embedder == "image" and len(profile.frames) == 4 and len(profile.mean) == 1280
    assert profile.landmarks is None and profile.frames_without_face == 4  # a toy character is no human face to dlib
    assert profile.provenance["embedder"]["sha256"] and profile.provenance["source_sha256"]
    path = write_profile(profile, tmp_path / "id0.json")
    again = read_profile(path)
    assert again == profile
    assert np.isclose(np.linalg.norm(again.mean_vector()), 1.0) and 0.0 <= again.spread < 1.0
    (tmp_path / "bad.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a motionlab identity profile"):
        read_profile(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="no face"):
        build_profile(toy_world / "id_0000_video", max_frames=2, embedder="face")


@needs_real
def test_csim_prefers_the_same_person():
    d0, d6 = REAL / "drivers" / "human_d0.mp4", REAL / "drivers" / "human_talk_d6.mp4"
    own, other = build_profile(d0, max_frames=4), build_profile(d6, max_frames=4)
    assert own.embedder == other.embedder == "face" and np.asarray(own.landmarks).shape == (len(own.frames), 68, 2)
    held_out = [i + 5 for i in own.frames[:-1]]  # frames the profile did not use
    embeddings, found = FaceEmbedder()(open_clip(d0).get(held_out))
    assert found.all()
    same, different = own.similarity(embeddings).mean(), other.similarity(embeddings).mean()
    assert same > different + 0.05, (same, different)


def test_profile_command(toy_world, tmp_path):
    result = run_cli("motionlab-data", "profile", f"source={toy_world / 'id_0001.png'}", "out=id1.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_profile(tmp_path / "id1.json").frames == [0]
    missing = run_cli("motionlab-data", "profile", f"source={tmp_path / 'nothing.mp4'}", "out=x.json", cwd=tmp_path)
    assert missing.returncode != 0 and "does not exist" in missing.stderr and not (tmp_path / "x.json").exists()
