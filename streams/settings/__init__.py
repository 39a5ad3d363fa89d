"""Settings: the one frozen settings object and its strict loader.

- :mod:`~streams.settings.model`: :class:`~streams.settings.model.Settings`, every field with
  the comment ``docs/settings.md`` is generated from, and its validation;
- :mod:`~streams.settings.load`: reading it from a TOML file and ``LOA_*`` variables, strictly
  (an unknown name or an unparsable value stops the process), and ``docs/settings.md``
  (``python -m streams.settings.load > docs/settings.md``).

The loader imports the model, never the other way.
"""
