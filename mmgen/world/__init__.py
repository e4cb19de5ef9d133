"""The procedural world the shipped model knows (see ../shared/WORLD.md)."""
from .render import render
from .scene import (BACKGROUND_COLORS, CELLS, OBJECT_COLORS, SHAPES, SIZES, Obj, Scene, Sign,
                    is_valid, sample_scene, validate)

__all__ = ["render", "sample_scene", "Scene", "Obj", "Sign", "validate", "is_valid",
           "OBJECT_COLORS", "BACKGROUND_COLORS", "SHAPES", "SIZES", "CELLS"]
