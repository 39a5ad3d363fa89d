"""Tools the tests use, not tests themselves: the mutation runner (``python -m
tests.tools.mutation``), the documented-examples reader and the XML-signing helpers."""
