class IngestError(ValueError):
    """Input that cannot be ingested; the message names the file, row, sample or gene."""
