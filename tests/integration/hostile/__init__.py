"""The hostile-input suite: what a hostile site, a careless user or a buggy client sends.

Each test asserts a clear 4xx (or gRPC status) naming the field, a `/healthz` that keeps answering
within a second (`tests.support.hostile.health_answers`), bounded memory
(`tests.support.hostile.memory_stays_under`) and no loop without a pause. One file per kind of
input: pages and robots.txt from a local site, definitions and configs, request bodies and
queries, gRPC clients.
"""
