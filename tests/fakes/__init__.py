"""Stateful hand-written fakes of the driver's ports, shared by the test suites."""
