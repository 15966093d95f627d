"""Two-stage training on a tiny synthetic talking clip; data caching and video preprocessing."""

import numpy as np
import pytest
import torch

from portraittalk.engines.diffusion.data import (
    TalkingFaceVideoDataset,
    crop_square,
    face_crop_box,
    load_video_cache,
    preprocess_video,
    to_crop_coords,
    write_video_cache,
)
from portraittalk.engines.diffusion.pipeline import PortraitTalkPipeline
from portraittalk.engines.diffusion.tiny import build_tiny_pipeline, synthetic_talking_clip
from portraittalk.engines.diffusion.train import TrainConfig, _parser, train

from .conftest import input_file, present_samples

pytestmark = pytest.mark.usefixtures("torch_one_thread")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    frames, landmarks, audio = synthetic_talking_clip(n_frames=24, size=32, fps=25.0, seed=4)
    embeddings = np.random.default_rng(0).standard_normal((3, 128)).astype(np.float32)
    write_video_cache(root / "clip", frames, landmarks, audio, 25.0, embeddings, np.array([0, 11, 23]),
                      caption="a person talking")
    return root


def test_dataset_items(cache_dir):
    ds = TalkingFaceVideoDataset.from_cache(cache_dir, clip_length=4, num_references=2, samples_per_epoch=8)
    item = ds[0]
    assert item["pixel_values"].shape == (4, 3, 32, 32)
    assert item["reference_pixels"].shape == (2, 3, 32, 32)
    assert item["face_embeddings"].shape == (2, 128)
    assert item["structure"].shape == (4, 3, 32, 32)
    assert item["loss_weights"].shape == (4, 1, 32, 32)
    assert item["caption"] == "a person talking"
    assert -1.0 <= float(item["pixel_values"].min()) and float(item["pixel_values"].max()) <= 1.0
    # the face and mouth get the extra reconstruction weight
    assert float(item["loss_weights"].max()) > 2.5 and float(item["loss_weights"].min()) == 1.0
    ds.cache_audio_features("toy", lambda audio, fps, n: np.tile(np.arange(n, dtype=np.float32)[:, None, None], (1, 2, 3)))
    assert load_video_cache(cache_dir / "clip").audio_features("toy").shape == (24 + 2, 2, 3)
    item = ds[1]
    windows = item["audio_windows"]
    assert windows.shape == (4, 5, 2, 3)
    # consecutive frames' windows are shifted by one frame of speech
    assert torch.equal(windows[1:, :-1], windows[:-1, 1:])


def test_two_stage_training_reduces_the_loss_and_reloads(cache_dir, tmp_path):
    init = tmp_path / "init"
    build_tiny_pipeline(seed=0, motion=False).save_pretrained(init)

    stage1 = train(
        TrainConfig(stage=1, init=str(init), output_dir=str(tmp_path / "stage1"), batch_size=4, learning_rate=2e-3,
                    max_steps=14, warmup_steps=0, num_workers=0, log_every=0, seed=1, eval_timesteps=(200, 500, 800)),
        dataset=TalkingFaceVideoDataset.from_cache(cache_dir, clip_length=1, samples_per_epoch=64),
    )
    assert stage1.steps == 14 and all(np.isfinite(stage1.losses))
    assert stage1.eval_loss_after < 0.75 * stage1.eval_loss_before

    stage2 = train(
        TrainConfig(stage=2, init=str(tmp_path / "stage1"), output_dir=str(tmp_path / "stage2"), batch_size=1,
                    clip_length=4, learning_rate=5e-3, max_steps=8, warmup_steps=0, num_workers=0, log_every=0, seed=1,
                    eval_timesteps=(200, 500, 800)),
        dataset=TalkingFaceVideoDataset.from_cache(cache_dir, clip_length=4, samples_per_epoch=16),
    )
    # Stage 2 starts from an already fitted model with new parts at zero effect: a smaller, real drop.
    assert stage2.eval_loss_after < stage2.eval_loss_before

    # Stage 2 trained only the temporal and audio parts: stage-1 weights are unchanged.
    s1 = PortraitTalkPipeline.from_pretrained(tmp_path / "stage1")
    s2 = PortraitTalkPipeline.from_pretrained(tmp_path / "stage2")
    s2.set_progress_bar_config(disable=True)
    assert type(s1.unet).__name__ == "UNet2DConditionModel" and type(s2.unet).__name__ == "UNetMotionModel"
    for a, b in zip(s1.reference_unet.parameters(), s2.reference_unet.parameters()):
        assert torch.equal(a, b)
    s1_conv = s1.unet.conv_in.weight
    assert torch.equal(s1_conv, s2.unet.conv_in.weight)
    for a, b in zip(s1.condition_adapter.condition_parameters("audio"), s2.condition_adapter.condition_parameters("audio")):
        assert a.shape == b.shape
    assert any(not torch.equal(a, b) for a, b in zip(s1.condition_adapter.condition_parameters("audio"),
                                                      s2.condition_adapter.condition_parameters("audio")))

    frames, _, audio = synthetic_talking_clip(n_frames=8, size=32, fps=25.0, seed=9)
    video = s2([frames[0]], audio, fps=25.0, num_frames=6, num_inference_steps=2).frames
    assert video.shape == (6, 32, 32, 3) and video.dtype == np.uint8
    assert (tmp_path / "stage2" / "trainer_state.json").is_file()


def test_cli_accepts_every_setting():
    args = vars(_parser().parse_args(["--stage", "2", "--init", "runs/s1", "--clip-length", "12",
                                      "--gradient-checkpointing"]))
    assert args["stage"] == 2 and args["init"] == "runs/s1" and args["clip_length"] == 12
    assert args["gradient_checkpointing"] is True
    assert set(args) == set(TrainConfig.__dataclass_fields__)


def test_face_crop_geometry():
    pts = np.array([[100, 100], [200, 100], [150, 220]], np.float32)
    box = face_crop_box(pts, scale=1.5)
    assert box[2] - box[0] == pytest.approx(180) and box[3] - box[1] == pytest.approx(180)
    crop_pts = to_crop_coords(pts, box, 90)
    assert crop_pts.min() >= 0 and crop_pts.max() <= 90
    image = np.zeros((480, 640, 3), np.uint8)
    image[100:221, 100:201] = 255
    crop = crop_square(image, box, 90)
    assert crop.shape == (90, 90, 3)
    inside = crop[int(crop_pts[:, 1].min()) + 2 : int(crop_pts[:, 1].max()) - 2,
                  int(crop_pts[:, 0].min()) + 2 : int(crop_pts[:, 0].max()) - 2]
    assert inside.mean() > 250


@pytest.mark.parametrize("portrait_ref, speech_ref", [
    ("examples/grace_hopper.jpg", "examples/librivox_0880.wav"),
    ("examples/astronaut_eileen_collins.jpg", "examples/librivox_0870.wav"),
    *present_samples(("images/obama_official_portrait.jpg", "audio/jfk_inaugural_en_16k.wav")),
])
def test_preprocess_a_real_talking_video(tmp_path, generated, portrait_ref, speech_ref):
    import cv2
    import imageio_ffmpeg

    portrait_path, speech = input_file(portrait_ref, generated), input_file(speech_ref, generated)
    portrait = cv2.cvtColor(cv2.imread(str(portrait_path)), cv2.COLOR_BGR2RGB)
    portrait = cv2.resize(portrait, (320, 400), interpolation=cv2.INTER_AREA)
    video = tmp_path / "talk.mp4"
    writer = imageio_ffmpeg.write_frames(str(video), (320, 400), fps=25, audio_path=str(speech),
                                         output_params=["-shortest"])
    writer.send(None)
    for k in range(30):  # a slow push-in, as a camera would do
        s = 1 + 0.004 * k
        m = cv2.getRotationMatrix2D((160, 200), 0, s)
        writer.send(np.ascontiguousarray(cv2.warpAffine(portrait, m, (320, 400), borderMode=cv2.BORDER_REPLICATE)))
    writer.close()

    class ConstantEmbedder:
        def __call__(self, rgb):
            return np.full(128, 0.1, np.float32)

    cache = preprocess_video(video, tmp_path / "cache", resolution=64, fps=25.0, face_embedder=ConstantEmbedder())
    assert cache is not None
    assert cache.frames.shape == (30, 64, 64, 3) and cache.landmarks.shape == (30, 478, 2)
    assert len(cache.audio) == pytest.approx(30 / 25 * 16000, abs=400)
    assert np.abs(cache.audio).max() > 0.01  # the speech came through
    # the face is centred in the crop and fills a sensible part of it
    centre = cache.landmarks.mean(axis=1)
    assert np.all(np.abs(centre - 32) < 10)
    extent = np.ptp(cache.landmarks, axis=1).max(axis=1)
    assert np.all((extent > 64 / 1.6 * 0.8) & (extent < 64))
    again = preprocess_video(video, tmp_path / "cache", resolution=64, fps=25.0, face_embedder=ConstantEmbedder())
    assert again.root == cache.root  # the cache is reused
