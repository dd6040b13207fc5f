"""groqsim: a capacity simulator for the Groq API's organization rate limits."""
__version__ = "0.1.0"

from .catalog import Catalog, Limits
from .headers import rate_limit_headers
from .limiters import ALGORITHMS, FixedWindow, SlidingLog, SlidingWindowCounter, TokenBucket
from .limitset import LimitSet

__all__ = ["Catalog", "Limits", "LimitSet", "TokenBucket", "FixedWindow", "SlidingLog", "SlidingWindowCounter",
           "ALGORITHMS", "rate_limit_headers"]
