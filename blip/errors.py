"""Errors of the blip library: one small hierarchy, each message a single line naming what failed."""


class BlipError(Exception):
    """Base of every error blip raises on purpose."""


class PackageError(BlipError):
    """A model package is missing, corrupt, or lacks what the caller asked for."""


class ImageError(BlipError):
    """An image or frame cannot be used (empty, unreadable, too large)."""


class TokenizerError(BlipError):
    """Text cannot be tokenized (empty prompt, missing vocabulary)."""


class BackendError(BlipError):
    """A runtime backend is unavailable or failed to run a graph."""


class ExportError(BlipError):
    """A checkpoint cannot be exported (not BLIP, or a graph disagrees with PyTorch)."""
