"""mmgen: a local, GPT-4o-style conversational image generator."""
__version__ = "0.1.0"
