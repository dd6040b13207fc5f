"""pytest plugin loaded by tools/mutation.py: hypothesis without shrinking and without its example
database, on top of whatever profile the suite loaded.  A mutant only needs *a* failing example, and
shrinking one can take longer than the whole search; the database would let one mutant's failure leak
into the next run."""
from hypothesis import Phase, settings


def pytest_sessionstart(session):
    settings.register_profile("mutation", parent=settings.default, database=None,
                              phases=(Phase.explicit, Phase.reuse, Phase.generate))
    settings.load_profile("mutation")
