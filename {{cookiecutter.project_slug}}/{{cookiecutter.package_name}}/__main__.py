"""`python -m <package>` runs the command line, as the installed script does."""

from .launch import main

main()
