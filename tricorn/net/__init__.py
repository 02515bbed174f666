"""Listening sockets: parsing where to listen, binding, and where inherited sockets come from.

The lowest layer next to ``logs`` and ``importer``: it knows sockets and file descriptors,
nothing of Tricorn's settings. Its errors are ``BindError``s carrying the one line to show;
``tricorn.config`` words them into its own ``ConfigError`` for the single-process server,
and the master logs them as they are.

* ``sockets`` -- one socket: ``--bind`` syntax (``parse_bind``), binding TCP and unix
  sockets, taking a socket from a file descriptor.
* ``listeners`` -- the set of listening sockets a master shares with its workers, and
  where they come from: a master we replace (USR2 hand-over), systemd socket activation,
  or the configured addresses.
"""
