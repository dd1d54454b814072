"""A tiny Ray job for the quickstart and `make demo`: submit it from the repository's root with
`ray job submit … --working-dir examples -- python train.py` (docs/quickstart.md)."""

import socket

import ray

ray.init()


@ray.remote
def square(x: int) -> int:
    return x * x


print("squares computed on the cluster:", ray.get([square.remote(i) for i in range(5)]))
print("hello from", socket.gethostname())
