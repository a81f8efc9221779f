"""Retrieval: the FAISS index over the aligned RNA library, Soft-kNN and gene-set prompts.

Answers questions from what ingest wrote and training fitted; it never writes
embeddings itself. Built by the alignment and prompting issues.
"""
