"""Errors that carry a message meant for the user, not a traceback.

The command-line tools print ``str(error)`` of these and exit with status 2.
"""


class BioPluginError(Exception):
    """A problem with the user's input (data, config, checkpoint) explained in one sentence."""


class DatasetError(BioPluginError, ValueError):
    """The dataset folder cannot be used as given."""


class ConfigError(BioPluginError, ValueError):
    """The config asks for something the data or the machine cannot give."""


class CheckpointError(BioPluginError, RuntimeError):
    """A checkpoint cannot be found, fetched or loaded."""


class OutputError(BioPluginError, OSError):
    """Results cannot be written: the folder is not writable or the disk is full."""
