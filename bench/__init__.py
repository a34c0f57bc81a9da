"""pysshfs against OpenSSH sshfs on the same throwaway sshd: `python bench/run.py`.

Not part of the installed package; `bench/run.py` puts the repository root on sys.path.
"""
