"""Benchmarks anyone can rerun from a source checkout (not shipped in the wheel): ``make bench`` runs them all, and
``attention-flows bench NAME`` one of them. Each prints its measured figures next to their targets.

- :mod:`benchmarks.engine`: ``bench engine`` (flow, rollout, extract, compare), and ``bench`` changes, load, graph,
  relevance, faithfulness, seeds;
- :mod:`benchmarks.mixing`: ``bench mixing`` (the context-mixing measures' cost, memory and faithfulness);
- :mod:`benchmarks.dashboard`: ``bench dashboard``, ``bench export``, ``bench memory``;
- :mod:`benchmarks.team`: ``bench team`` (the team server under load and faults);
- :mod:`benchmarks.corpus`: ``bench corpus``, ``bench corpus-memory``;
- :mod:`benchmarks.gallery`: ``make gallery`` (the screenshots of docs/gallery.md);
- :mod:`benchmarks.common`: what they share (the figure row, the timer, the default pair's held-out sentences).
"""
