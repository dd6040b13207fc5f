"""Hypothesis profiles: ``quick`` (the default) keeps the suite fast; ``HYPOTHESIS_PROFILE=deep`` searches
harder (2 000 examples per property)."""
import os

from hypothesis import settings

settings.register_profile("quick", max_examples=150, deadline=None)
settings.register_profile("deep", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "quick"))
