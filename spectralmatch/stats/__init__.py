"""Statistics: mergeable accumulators, the requests a step makes, and what it is handed."""
