"""Engines the bundled services share: supervising programs (their settings,
their output, their restarts and the record of what is running), each part
usable and testable on its own, beneath the service that gives it commands.
"""
