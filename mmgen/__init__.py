"""mmgen: a local, GPT-4o-style conversational image generator.

    import mmgen
    model = mmgen.load()
    chat = model.chat(seed=0)
    reply = chat.send("draw a red circle at the top left")
"""
__version__ = "0.1.0"
__all__ = ["load", "MMGen", "ChatSession"]


def __getattr__(name):
    # lazy: `import mmgen` (and `mmgen world …`) must not pay for importing torch
    if name in ("load", "MMGen"):
        from . import pipeline
        return getattr(pipeline, name)
    if name == "ChatSession":
        from .session import ChatSession
        return ChatSession
    raise AttributeError(f"module 'mmgen' has no attribute {name!r}")
