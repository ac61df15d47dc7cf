"""Subcommands of ``sketchgen``; see ``sketchgen.cli`` for the contract each module follows."""
