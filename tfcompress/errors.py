"""Errors a user can cause. The CLI turns any of them into one line on stderr."""


class Error(Exception):
    """Base class of every error a user of tfcompress can cause and fix."""


class InputError(Error):
    """A file, data spec or argument given by the user is missing, unreadable or wrong."""


class ConversionError(Error):
    """The TFLite converter could not produce the requested file."""


class UnsupportedModelError(Error):
    """The model is of a kind tfcompress does not handle (Keras 3, subclassed, unknown layer)."""
