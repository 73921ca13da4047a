"""One thin module per CLI command: arguments -> a typed config -> a ``run_*`` function of the library.

Each module exposes ``add_arguments(parser)`` and ``run(args, overrides) -> int``. At import a module reads only
config dataclasses (no torch), so ``rewardalign COMMAND --help`` is fast; the ``run_*`` function it calls is
imported when the command runs.
"""
