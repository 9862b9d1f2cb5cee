"""The worker runtime: claim a task, keep its lease, watch for cancel, run it, hand it back."""
