"""PortraitTalk: one portrait + speech → a talking-face video with per-frame identity scores."""

__version__ = "0.1.0"
