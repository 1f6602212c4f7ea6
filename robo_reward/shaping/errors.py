"""The one error type of reward shaping, shared by the wrapper, the potentials and their factory."""


class ShapingError(ValueError):
    """Shaping set up in a way that breaks its guarantees or cannot run; the message is one line."""
