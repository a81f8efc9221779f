-- The predictability spectrum (`hquery eval --prompts COLLECTION`): cross-validated
-- accuracy of each gene set's prediction from H&E, and the uncertainty check.
CREATE TABLE prompt_eval_runs (
    eval_id     VARCHAR PRIMARY KEY,
    created_at  TIMESTAMP NOT NULL,
    collection  VARCHAR NOT NULL,
    folds       INTEGER NOT NULL,
    k           INTEGER,
    tau         DOUBLE,
    n_slides    INTEGER NOT NULL,
    seconds     DOUBLE,
    params      JSON
);

CREATE TABLE prompt_eval_results (
    eval_id       VARCHAR NOT NULL,
    gene_set      VARCHAR NOT NULL,
    method        VARCHAR NOT NULL,   -- softknn | mlp
    pearson_r     DOUBLE,
    r2            DOUBLE,
    r2_calibrated DOUBLE,             -- after a linear fit on the training folds (softknn); = r2 for mlp
    n             INTEGER NOT NULL
);

-- Held-out error by quintile of Soft-kNN dispersion, both in units of each set's truth SD.
CREATE TABLE prompt_eval_calibration (
    eval_id      VARCHAR NOT NULL,
    quintile     INTEGER NOT NULL,
    dispersion_z DOUBLE,
    abs_error_z  DOUBLE,
    n            INTEGER NOT NULL
);
