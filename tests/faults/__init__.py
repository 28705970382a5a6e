"""The fault matrix: real mosquitto, real gateway processes, real stores, checked against the publisher's truth.

`make test` runs each scenario small; `make faults` (python -m tests.faults) runs them at full size and
prints one summary line.
"""
