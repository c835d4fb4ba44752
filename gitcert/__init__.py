"""gitcert: a GitOps reconciler for certificates kept in a git repository.

The command line lives in :mod:`gitcert.cli`; the run itself (manifests, plan, apply) in
:mod:`gitcert.reconcile`. Everything below those is a library layer with no knowledge of
the command line.
"""

__version__ = "0.1.0"
