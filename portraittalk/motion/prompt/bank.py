"""What prompt words mean: several phrasings per control label, and the modifier, function
and subject words the parser takes out or passes over."""

from __future__ import annotations

from functools import lru_cache

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
             "bluish", "icy", "cold", "cool lighting", "moonlight", "wintry", "teal tint", "chilly", "cold light",
             "winter light", "frosty"),
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


@lru_cache(maxsize=1)
def exact_bank() -> dict[str, str]:
    """Bank phrase → its label."""
    return {p: label for label, phrases in BANK.items() for p in phrases}
