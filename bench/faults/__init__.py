"""The fault suite: open-loop alert load through two router replicas and two runtime pods
on the local cluster while one fault at a time hits a part, then a ledger of what every
acknowledged alert became (see bench/README.md, "Faults").

`run.py` is the runner (rate and duration as parameters, a table, results.json);
tests/faults runs a bounded slice of it.
"""
