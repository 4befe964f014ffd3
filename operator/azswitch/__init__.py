"""azswitch: a Kubernetes operator that keeps cloud replication consistency groups primary in the AZ Git says."""

__version__ = "0.1.0"
