"""Scheduled jobs, one module each (installed as ``mailopsd.jobs``).

Every module provides ``run(ctx: JobContext) -> JobResult``; the scheduler and
``mailopsd run-job ID`` both call it through ``mailopsd.daemon.runner.run_job``. Register a new job
in ``mailopsd.daemon.registry.JOBS`` and give it a ``[jobs.<id>]`` table in the config schema.
"""
