"""Application plumbing shared by every step: cancellation, logging set-up, memory budget,
progress reporting and scratch space. Nothing here knows about astronomy."""
