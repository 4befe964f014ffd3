"""Development tooling: the cloud simulator, the local control plane, the local environment and the demo.

None of this runs in production: ``azswitch run`` never imports it (an import-linter contract in
pyproject.toml checks that), and it exists so that tests, benchmarks and ``azswitch demo`` can run the real
operator against a real kube-apiserver and a faithful fake of the cloud on one machine. Only ``azswitch.cli``
reaches in here, lazily, for the ``simulate``, ``control-plane`` and ``demo`` commands.
"""
