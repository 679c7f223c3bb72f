"""What a run prints on the console: a summary, or MMEngine's whole log.

MMEngine logs the environment (with every compiler flag), the whole config and the hook table
for each Runner, then a line every few iterations. All of it goes to the log file in the work
dir in either mode. In ``'summary'`` mode the console shows only what a user reads: the start
line (config, work dir, device and precision, where the weights come from), one line per
epoch with the ETA, progress during long work, warnings, and where results went
(:class:`~bioplugin.engine.hooks.ConsoleSummaryHook` writes those lines). ``'full'`` keeps
MMEngine's console.

Our tools print the summary (``--verbose``: the full console); a config may choose with
``console = 'summary'`` or ``'full'``; without either, a Runner keeps MMEngine's behaviour, so
MMPretrain's own tools print what they always print.
"""
import logging
from typing import Optional

CONSOLE_MODES = ('summary', 'full')
_default_mode = 'full'  # MMEngine's behaviour unless a tool or the config asks otherwise


def set_console(mode: str) -> None:
    """The console mode of Runners whose config does not choose one (our tools set it from
    ``--verbose``)."""
    global _default_mode
    if mode not in CONSOLE_MODES:
        raise ValueError(f'console={mode!r}: use one of {", ".join(CONSOLE_MODES)}')
    _default_mode = mode


def console_mode(cfg_value: Optional[str] = None) -> str:
    """The config's ``console`` if it sets one, else the process default."""
    mode = cfg_value or _default_mode
    if mode not in CONSOLE_MODES:
        from ..errors import ConfigError
        raise ConfigError(f'console={mode!r}: use one of {", ".join(CONSOLE_MODES)}.')
    return mode


def log_summary(logger: logging.Logger, message: str) -> None:
    """Log ``message`` at INFO, marked to reach the console in ``'summary'`` mode too."""
    logger.info(message, extra=dict(console=True))


# MMEngine's notes to the authors of code built on it (its own hooks trigger them on every
# run); nothing a user can act on. The log file keeps them.
_DEVELOPER_NOTES = ('will be deprecated in future', )


class SummaryFilter(logging.Filter):
    """Let the lines marked by :func:`log_summary`, warnings and errors through (not
    MMEngine's deprecation notes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, 'console', False):
            return True
        if record.levelno < logging.WARNING:
            return False
        return not any(note in record.getMessage() for note in _DEVELOPER_NOTES)


class SummaryFormatter(logging.Formatter):
    """The message alone; ``warning:`` / ``error:`` before the others' (as our tools print
    theirs)."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.levelno >= logging.WARNING and not getattr(record, 'console', False):
            message = f'{record.levelname.lower()}: {message}'
        return message


def apply_console_mode(logger: logging.Logger, mode: str) -> None:
    """Filter and format the console handler of an MMEngine logger for ``mode`` (its file
    handler keeps everything, in MMEngine's format)."""
    for handler in logger.handlers:
        console = (isinstance(handler, logging.StreamHandler)
                   and not isinstance(handler, logging.FileHandler))
        if console and mode == 'summary':
            handler.addFilter(SummaryFilter())
            handler.setFormatter(SummaryFormatter())
