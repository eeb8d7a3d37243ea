"""The peers of the benchmark: Celery and Procrastinate apps running the same command as hetuflow, and the
code that starts their brokers and workers and times them (see ``bench/peers_bench.py``)."""
