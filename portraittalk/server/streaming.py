"""The page's player for a video still being rendered.

The pipeline writes the video in fragmented-MP4 pieces (an ``init.mp4`` header, then a piece
of one or two seconds at a time) and the render handler hands the page a small JSON state
after each piece: the pieces' server paths, the MIME type with codecs, and finally the
finished MP4. ``PLAYER_JS`` runs in the browser: it feeds the pieces, in order, to a
MediaSource on a plain ``<video>`` element (Chromium, Firefox, Safari 17+), so playback starts
with the first piece. When the finished MP4 arrives the page shows it in its own player (the
one with the download button) and ``HANDOVER_JS`` continues it where the stream was.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..pipeline import VideoChunk

AAC_LC = "mp4a.40.2"  # the encoder's audio: AAC low complexity


def codecs_of(init: Path) -> str:
    """The MIME type a MediaSource needs for a stream whose header is ``init``: the H.264
    profile and level read from its avcC box, and AAC when it has a sound track."""
    data = init.read_bytes()
    at = data.find(b"avcC")
    if at < 0 or len(data) < at + 8:
        raise ValueError(f"{init.name} holds no H.264 stream header")
    profile, compatibility, level = data[at + 5], data[at + 6], data[at + 7]
    codecs = [f"avc1.{profile:02X}{compatibility:02X}{level:02X}"]
    if b"mp4a" in data:
        codecs.append(AAC_LC)
    return f'video/mp4; codecs="{",".join(codecs)}"'


@dataclass
class StreamState:
    """What the page's player reads: one render's pieces so far, and its finished MP4 at the end."""

    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    mime: str = ""
    init: str = ""
    pieces: list[str] = field(default_factory=list)
    final: str | None = None

    def add(self, chunk: VideoChunk) -> str:
        """The state (JSON) with one more piece."""
        if not self.init:
            self.init, self.mime = str(chunk.init), codecs_of(chunk.init)
        self.pieces.append(str(chunk.path))
        return self.to_json()

    def finish(self, video: Path) -> str:
        """The state (JSON) once the finished MP4 is there."""
        self.final = str(video)
        return self.to_json()

    def to_json(self) -> str:
        return json.dumps(asdict(self))


# The player: <video> fed by a MediaSource, piece after piece. `element`, `props` and `watch`
# are gr.HTML's js_on_load names. Files come from Gradio's file route.
PLAYER_HTML = "<video controls autoplay playsinline></video>"
PLAYER_CSS = "video { display: block; width: 100%; height: 420px; background: #000; border-radius: 8px; }"
PLAYER_JS = """
const video = element.querySelector('video');
const root = (window.gradio_config && window.gradio_config.root) || '';
const url = path => root + '/gradio_api/file=' + encodeURI(path);
let current = null;
function open(state) {
  const source = new MediaSource();
  current = {state, source, buffer: null, next: 0, fetching: false};
  video.src = URL.createObjectURL(source);
  source.addEventListener('sourceopen', () => {
    current.buffer = source.addSourceBuffer(state.mime);
    current.buffer.addEventListener('updateend', pump);
    pump();
  }, {once: true});
  video.play().catch(() => {});
}
async function pump() {
  const c = current;
  if (!c || !c.buffer || c.buffer.updating || c.fetching) return;
  const files = [c.state.init, ...c.state.pieces];
  if (c.next >= files.length) {
    if (c.state.final && c.source.readyState === 'open') c.source.endOfStream();
    return;
  }
  c.fetching = true;
  const data = await fetch(url(files[c.next])).then(r => r.arrayBuffer());
  c.fetching = false;
  if (current !== c) return;
  c.next += 1;
  c.buffer.appendBuffer(data);
}
function show() {
  const state = props.value ? JSON.parse(props.value) : null;
  if (!state || !state.init) { current = null; return; }
  if (!current || current.state.id !== state.id) open(state); else current.state = state;
  if (state.final) {  // the finished MP4's player takes over from here (HANDOVER_JS)
    window.ptStreamClock = {time: video.currentTime, playing: !video.paused && !video.ended};
    video.pause();
  }
  pump();
}
watch('value', show);
show();
"""

# The finished video's player continues where the stream was.
HANDOVER_JS = """
() => {
  const clock = window.ptStreamClock;
  window.ptStreamClock = null;
  const video = document.querySelector('#pt-video video');
  if (!clock || !video) return;
  const go = () => { video.currentTime = clock.time; if (clock.playing) video.play().catch(() => {}); };
  if (video.readyState >= 1) go(); else video.addEventListener('loadedmetadata', go, {once: true});
}
"""
