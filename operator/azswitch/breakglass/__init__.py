"""Break-glass: ``azswitch plan`` and ``azswitch apply``, for the day the cluster (or the operator) is down.

Both read ReplicationGroup manifests — the YAML Git holds (``-f``), or the cluster's own objects — and talk to
the cloud directly, with the operator's own code: ``plan`` runs the operator's planner (``azswitch.plan``) on
what the operator's reader (``reconcile.reading``) sees, and never calls a mutating API; ``apply`` runs the
operator's ``Reconciler`` unchanged over ``LocalKube``, a ``KubeAPI`` whose status writes go to a local
journal file (fsynced before each request), so an interrupted apply resumes by observing, never by
re-sending. No kopf here.

* ``manifests`` — loading and validating manifests (errors name the file, document and field).
* ``credentials`` — AK/SK from the Secret, a ``--credentials`` file or the environment.
* ``journalfile`` — the local intent journal (one JSON line per status write, fsynced, locked).
* ``localkube`` — ``KubeAPI`` over the manifests' bodies and the journal file.
* ``cluster`` — the cluster, when reachable: objects, Secrets, the leader Lease, operator pods, the hold.
* ``inputs`` — what plan and apply share: settings, groups, credentials, cloud clients.
* ``planning`` / ``applying`` — the two commands; ``report`` — their tables, JSON and YAML.
"""
