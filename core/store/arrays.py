"""Vectors in Lance tables: ``fixed_size_list<float32>`` columns to and from NumPy."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def vectors(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A Lance ``fixed_size_list<float32>`` column as a 2-D array, without a Python loop."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return array.values.to_numpy(zero_copy_only=False).reshape(len(array), array.type.list_size)


def vector_table(columns: dict[str, list], vectors: np.ndarray, name: str = "values") -> pa.Table:
    """Key ``columns`` plus one ``fixed_size_list<float32>`` column ``name`` of ``vectors`` (the inverse of
    :func:`vectors`)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    data = {k: pa.array(v, pa.string() if isinstance(v[0], str) else None) for k, v in columns.items()}
    data[name] = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    return pa.table(data)
