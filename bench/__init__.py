"""syncd's benchmark harness: ``make bench`` (= ``.venv/bin/python -m bench``) writes docs/benchmarks.md.

It starts every server it needs on 127.0.0.1 (a lean fake IdP, the real
oidc-provider, OpenBao, moto_server), runs syncd as a separate process with
generated credentials, and measures it from outside: rotations per second, CPU
seconds per rotation (psutil on syncd's pid), peak RSS and RSS per credential,
schedule lateness, freshness as a consumer sees it, start-up adoption. Beside
it, in the same run: the *floor* (the same mint + write calls in a bare loop)
and the *naive* cron-style script (one fresh Python process per rotation).

``python -m bench --help`` lists the options (``--quick`` is a ~3 minute smoke
run; ``--stores`` and ``--only`` select cases).
"""
