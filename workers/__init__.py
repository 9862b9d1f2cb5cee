"""Deployable worker entry points and the example tools used by the demo and the compose file."""
