from tests.adversarial.harness import make_proxy, proxy, ray  # noqa: F401 - fixtures
