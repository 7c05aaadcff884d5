"""Layer 6: the jobs, the only code that writes run folders and reports.

:func:`polytask.jobs.train.run_train` (and the single-task baselines), :mod:`.eval`, :mod:`.stages`,
:mod:`.merge`, :mod:`.affinity`, :mod:`.sweep`; :class:`~polytask.jobs.run_folder.RunFolder` knows
the layout of a run and :mod:`.output` the one output policy every command follows.
"""
