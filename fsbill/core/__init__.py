"""The pure core: money, rating, grants and every decision of a call's life.

Nothing under this package does I/O: no sockets, database, clock reads, logging or
configuration loading. Adapters around it (fsbill.esl, fsbill.db, fsbill.cli) read the
outside world, ask the core, and act on its answers.
"""
