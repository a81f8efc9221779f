"""``hquery view``: a local web viewer of a store's slides with tile-score heatmaps (:mod:`hquery.viewer.app`)."""

from hquery.viewer.app import create_app

__all__ = ["create_app", "serve"]


def serve(store, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve :func:`create_app` over ``store`` until interrupted (uvicorn)."""
    import uvicorn

    uvicorn.run(create_app(store), host=host, port=port, log_level="warning")
