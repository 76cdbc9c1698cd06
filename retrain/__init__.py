"""The front door: CLI, settings, wiring, the alert receiver and pipeline specs."""
