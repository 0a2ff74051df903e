"""`python -m <package>` runs the command line, as the installed script does."""

from .cli import app

app(prog_name=__package__)
