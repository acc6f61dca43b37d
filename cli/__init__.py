"""Entry points: the `mureka-etl` command (`main`), the `dagster dev` launcher (`dev`) and the demo (`demo`).

The top layer: it wires the library (`pipelines`), the Dagster layer (`assets`) and the simulator together.
"""
