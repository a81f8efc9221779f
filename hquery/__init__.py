"""hquery: ask an H&E slide a molecular question.

An embedded retrieval engine: H&E and RNA-seq embeddings in Lance tables, all
metadata in a DuckDB catalog, projection heads that align the two modalities,
and gene-set prompts scored on the RNA neighbours of each slide.
"""

__version__ = "0.1.0"
