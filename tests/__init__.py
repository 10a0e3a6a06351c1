"""routecast's test suite. A package so tests import their shared helpers as ``tests._support``."""
