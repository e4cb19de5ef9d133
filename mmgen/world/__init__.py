"""The procedural world the shipped model knows (see docs/WORLD.md)."""
from .conversation import Conversation, Turn, sample_conversation
from .edits import EDIT_KINDS, Edit, sample_edit
from .export import read_jsonl
from .prompts import CATEGORIES, Prompt, prompt_for, sample_prompt, spec_matches
from .language import describe
from .questions import QUESTION_KINDS, Question, sample_question
from .render import render
from .scene import (BACKGROUND_COLORS, CELLS, OBJECT_COLORS, SHAPES, SIZES, Obj, Scene, Sign,
                    is_valid, sample_scene, validate)

__all__ = ["render", "sample_scene", "Scene", "Obj", "Sign", "validate", "is_valid",
           "OBJECT_COLORS", "BACKGROUND_COLORS", "SHAPES", "SIZES", "CELLS",
           "sample_prompt", "prompt_for", "spec_matches", "Prompt", "CATEGORIES",
           "sample_edit", "Edit", "EDIT_KINDS", "sample_question", "Question", "QUESTION_KINDS", "describe",
           "sample_conversation", "Conversation", "Turn", "read_jsonl"]
