"""Shapes and behaviour of every block of the diffusion engine (tiny components, CPU, offline)."""

import numpy as np
import pytest
import torch

from portraittalk.engines.diffusion.audio import AudioProjection, SpeechFeatureEncoder, window_features
from portraittalk.engines.diffusion.guidance import guidance_branches
from portraittalk.engines.diffusion.identity import IdentityEncoder
from portraittalk.engines.diffusion.pipeline import window_plan
from portraittalk.engines.diffusion.structure import loss_weights, structure_map_from_landmarks
from portraittalk.engines.diffusion.tiny import build_tiny_pipeline, synthetic_talking_clip, tiny_audio_encoder

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline(seed=5)


@pytest.fixture(scope="module")
def clip():
    return synthetic_talking_clip(n_frames=16, size=64, fps=25.0, seed=2)


def test_identity_encoder_fuses_any_number_of_references():
    enc = IdentityEncoder(face_embed_dim=128, image_embed_dim=16, cross_attention_dim=24, num_face_tokens=3,
                          num_image_tokens=2, hidden_dim=32)
    faces, images = torch.randn(2, 3, 128), torch.randn(2, 3, 16)
    per_ref = enc.per_reference_tokens(faces, images)
    assert per_ref.shape == (2, 3, 5, 24)
    assert enc(faces, images).shape == (2, 5, 24)
    assert torch.allclose(enc(faces, images), per_ref.mean(dim=1))
    # descriptors are compared by direction only
    assert torch.allclose(enc(faces * 7.0, images), enc(faces, images), atol=1e-5)
    concat = IdentityEncoder(face_embed_dim=128, image_embed_dim=16, cross_attention_dim=24, num_face_tokens=3,
                             num_image_tokens=2, hidden_dim=32, fusion="concat")
    assert concat(faces, images).shape == (2, 15, 24)


def test_identity_net_outputs(pipe):
    g = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, 3, 3, 32, 32, generator=g) * 2 - 1
    latents = pipe.encode_pixels(pixels[0])[None]
    assert latents.shape == (1, 3, 4, 8, 8)
    with torch.no_grad():
        out = pipe.identity_net(pixels, latents, torch.randn(1, 3, 128, generator=g))
    assert out.tokens.shape == (1, pipe.identity_encoder.tokens_per_reference, 16)
    by_width = {}
    for feats in out.reference_features.values():
        by_width.setdefault(feats.shape[-1], set()).add(feats.shape[1])
    # 8×8 and 4×4 latent grids, three references each
    assert by_width == {16: {3 * 64}, 32: {3 * 16}}


def test_speech_features_per_frame_and_chunking():
    model, extractor = tiny_audio_encoder()
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(16000 * 3)).astype(np.float32)
    whole = SpeechFeatureEncoder(model, extractor, chunk_seconds=30.0)
    feats = whole.per_frame(audio, fps=25.0, n_frames=75)
    assert feats.shape == (75, 2, 16) and feats.dtype == torch.float32
    # Chunked encoding with a context margin matches the one-pass features away from the audio's ends.
    chunked = SpeechFeatureEncoder(model, extractor, chunk_seconds=1.0, margin_seconds=1.0).per_frame(audio, 25.0, 75)
    assert chunked.shape == feats.shape
    middle = slice(10, 65)
    rel = (chunked[middle] - feats[middle]).norm() / feats[middle].norm()
    assert rel < 0.35
    # Asking for more frames than the audio covers pads with silence instead of failing.
    assert whole.per_frame(audio[:4000], 25.0, 20).shape == (20, 2, 16)


def test_audio_windows_and_projection():
    per_frame = torch.arange(6, dtype=torch.float32).view(6, 1, 1).expand(6, 2, 3)
    w = window_features(per_frame, context_frames=2)
    assert w.shape == (6, 5, 2, 3)
    assert w[0, :, 0, 0].tolist() == [0, 0, 0, 1, 2]  # edges repeat, no invented speech
    assert w[5, :, 0, 0].tolist() == [3, 4, 5, 5, 5]
    assert window_features(per_frame, 1, start=2, length=3)[:, :, 0, 0].tolist() == [[1, 2, 3], [2, 3, 4], [3, 4, 5]]
    proj = AudioProjection(feature_dim=3, num_feature_layers=2, context_frames=2, intermediate_dim=8, num_tokens=4,
                           cross_attention_dim=16)
    assert proj(w[None]).shape == (1, 6, 4, 16)


def test_structure_maps_follow_the_mouth(clip):
    frames, landmarks, _ = clip
    maps = np.stack([structure_map_from_landmarks(lm, 64) for lm in landmarks])
    assert maps.shape == (16, 64, 64, 3) and maps.dtype == np.float32
    face, mouth, contours = maps[..., 0], maps[..., 1], maps[..., 2]
    assert ((mouth > 0.5) <= (face > 0.5)).mean() > 0.99  # the mouth lies inside the face
    assert 0.15 < (face > 0.5).mean() < 0.6 and contours.mean() > 0.01
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS

    lips = sorted({i for edge in FACEMESH_LIPS for i in edge})
    lips_height = np.ptp(landmarks[:, lips, 1], axis=1)
    mouth_area = (mouth > 0.5).mean(axis=(1, 2))
    assert np.ptp(lips_height) > 2  # the clip does open and close its mouth
    assert np.corrcoef(lips_height, mouth_area)[0, 1] > 0.8
    w = loss_weights(torch.from_numpy(maps).permute(0, 3, 1, 2), face_weight=1.0, mouth_weight=2.0)
    assert w.shape == (16, 1, 64, 64)
    assert float(w.max()) == pytest.approx(4.0, abs=1e-3) and float(w.min()) == pytest.approx(1.0)


def test_structure_encoder_and_animate_net_shapes(pipe, clip):
    _, landmarks, _ = clip
    maps = np.stack([structure_map_from_landmarks(lm * 0.5, 32) for lm in landmarks[:4]])
    maps_t = torch.from_numpy(maps).permute(0, 3, 1, 2)[None]  # (1, F, 3, 32, 32)
    latents = torch.randn(2, 4, 4, 8, 8)
    with torch.no_grad():
        struct = pipe.animate_net.encode_structure(maps_t.expand(2, -1, -1, -1, -1), latents)
        assert struct.shape == (2, 4, 4, 8, 8)
        assert torch.equal(pipe.animate_net.encode_structure(None, latents), torch.zeros_like(struct))
        tokens = pipe.animate_net.encode_audio(torch.randn(2, 4, 5, 2, 16))
        assert tokens.shape == (2, 4, 4, 16)
        out = pipe.animate_net(
            latents, torch.tensor(400), torch.randn(2, 16, 16), torch.randn(1, 4, 16), None, tokens, struct,
            identity_scale=torch.ones(2), audio_scale=torch.ones(2), reference_keep=torch.ones(2, dtype=torch.bool),
            reference_index=torch.zeros(2, dtype=torch.long),
        )
    assert out.shape == latents.shape and torch.isfinite(out).all()


def test_spatial_denoiser_handles_frames_independently():
    stage1 = build_tiny_pipeline(seed=5, motion=False)
    net = stage1.animate_net
    assert not net.has_motion_modules
    latents = torch.randn(1, 4, 3, 8, 8)
    args = (torch.tensor(300), torch.randn(1, 16, 16), None, None, None, torch.zeros(1, 4, 3, 8, 8))
    kw = dict(identity_scale=torch.zeros(1), audio_scale=torch.zeros(1), reference_keep=torch.zeros(1, dtype=torch.bool),
              reference_index=torch.zeros(1, dtype=torch.long))
    with torch.no_grad():
        out = net(latents, *args, **kw)
        changed = latents.clone()
        changed[:, :, 2] += 1.0
        out2 = net(changed, *args, **kw)
    assert out.shape == latents.shape
    assert torch.equal(out[:, :, :2], out2[:, :, :2])  # without motion modules frames do not interact


def test_guidance_branch_weights():
    for scales in [(2.0, 3.5, 1.5), (1.0, 1.0, 1.0), (3.0, 3.0, 3.0), (0.0, 2.0, 5.0)]:
        branches = guidance_branches(*scales)
        assert sum(b.weight for b in branches) == pytest.approx(1.0)
    assert [(b.identity, b.audio, b.text) for b in guidance_branches(1, 1, 1)] == [(True, True, True)]
    assert len(guidance_branches(3, 3, 3)) == 2  # equal scales are ordinary CFG
    assert len(guidance_branches(2.0, 3.5, 1.5)) == 4
    assert all(not b.text for b in guidance_branches(2.0, 3.5, 1.5, text_is_distinct=False))


def test_window_plan_covers_every_frame_once():
    for n, length, motion in [(5, 8, 3), (8, 8, 3), (20, 8, 3), (100, 16, 4), (17, 16, 0)]:
        plan = window_plan(n, length, motion)
        produced = [i for s, e, ctx in plan for i in range(s + ctx, e)]
        assert produced == list(range(n))
        assert all(e - s == min(length, n) for s, e, _ in plan)
        assert all(ctx >= min(motion, length - 1) for _, _, ctx in plan[1:])
