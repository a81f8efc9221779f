"""Training: contrastive projection heads, PEKA adapters and the refresh loop.

Fits models from pairs in the store and records them as catalog versions.
Built by the alignment and PEKA issues.
"""
