"""pytest plugin loaded by tools/mutation.py: hypothesis without shrinking and without its example
database, and with at most ``GROQSIM_MUTATION_MAX_EXAMPLES`` examples per property, on top of whatever
profile the suite loaded.  A mutant only needs *a* failing example, and shrinking one can take longer than
the whole search; the database would let one mutant's failure leak into the next run."""
import os

from hypothesis import Phase, settings


def pytest_sessionstart(session):
    cap = int(os.environ.get("GROQSIM_MUTATION_MAX_EXAMPLES", "0"))
    extra = {"max_examples": min(cap, settings.default.max_examples)} if cap else {}
    settings.register_profile("mutation", parent=settings.default, database=None,
                              phases=(Phase.explicit, Phase.reuse, Phase.generate), **extra)
    settings.load_profile("mutation")
