"""What every stage shares and nothing else: URIs, config loading, Ray start-up, cache
keys and progress reporting. It imports no other part of cortexzoo."""
