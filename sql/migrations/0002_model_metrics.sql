-- Per-fold evaluation metrics of trained models, one value a row, for SQL.
CREATE TABLE model_metrics (
    model_version VARCHAR NOT NULL,
    method        VARCHAR NOT NULL,   -- aligned | ridge | chance
    direction     VARCHAR NOT NULL,   -- he_to_rna | rna_to_he
    metric        VARCHAR NOT NULL,   -- recall@10, mrr, mean_rank ...
    fold          INTEGER NOT NULL,
    value         DOUBLE
);
