"""pysshfs: mount a directory of any SSH server with FUSE, like sshfs."""

__version__ = "0.1.0"
