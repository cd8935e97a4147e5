"""Run folders: their files, config and metrics, the "same run?" plan, ``--force`` and interruption
(:mod:`.folder`), and the grids of ``kdtool sweep`` (:mod:`.sweep`)."""
