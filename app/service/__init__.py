"""The analysis service: the per-pair memo of runs, graphs and relevance, the pair registry, caches and stores."""
