"""The pre-fork master: ``Arbiter(config).run()`` binds the listeners, forks the workers
and supervises them (signals, health checks, rolling restarts, recycling).

Modules: ``arbiter`` (the supervisor loop), ``rollout`` (which workers to start and
retire), ``process`` (the master's handle on one worker: forking it, its checks),
``signals`` (the signal queue), ``reexec`` (USR2), ``control`` (``tricorn status``),
``watcher`` (``--reload``), ``systemd``, ``pidfile``. The listening sockets are
``tricorn.net``'s; what a forked worker runs is ``tricorn.worker``'s.
"""
