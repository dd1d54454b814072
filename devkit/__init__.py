"""The test stack, not shipped: shared by tests/, the demo, the soak and the benchmarks.

ports        the one free-port helper
http         blocking GETs, raw HTTP bytes, reading framed answers
keys         a key set served on loopback
config       the tests' config and policy as real files
ray_double   the one stand-in for Ray's dashboard (tripwire or recording)
proxy        the real proxy app on its real listener
rayhead      a real Ray head (token auth on) as a process, stopped by its pid
stack        Ray head + proxy + dev-iap as processes (end-to-end tests, `make demo`)
fixtures     the pytest fixtures (a plugin of tests/conftest.py)
"""
