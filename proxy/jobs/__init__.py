"""Jobs inside a tenant: who submitted each one (`submission.py`), who may stop, delete or read the
logs of it (`ownership.py`, the owner learnt from Ray by `owners.py`), and keeping the secrets a job
was given out of everything read back through the proxy (`secrets.py`). `service.py` ties them to
the request path.

Nothing is imported here, so that `authz` can use the pure pieces without pulling in the I/O.
"""
