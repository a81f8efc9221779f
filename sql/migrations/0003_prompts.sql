-- Molecular prompting. A run scores one or more gene sets; schema version 1's
-- single-set prompt tables were never written by any release, so they are replaced.
DROP VIEW IF EXISTS prompt_results_annotated;
DROP TABLE prompt_results;
DROP TABLE prompt_runs;

CREATE TABLE prompt_runs (
    run_id           VARCHAR PRIMARY KEY,
    created_at       TIMESTAMP NOT NULL,
    method           VARCHAR NOT NULL,   -- softknn | mlp
    aggregate        VARCHAR,            -- score | expression (softknn)
    level            VARCHAR NOT NULL,   -- slide | tile
    model_version    VARCHAR,
    index_version    VARCHAR,
    library_version  BIGINT,             -- committed version of the Lance expression table
    k                INTEGER,
    tau              DOUBLE,
    n_samples        INTEGER NOT NULL,
    seconds          DOUBLE,
    params           JSON
);

CREATE TABLE prompt_gene_sets (
    run_id       VARCHAR NOT NULL,
    gene_set     VARCHAR NOT NULL,
    members_hash VARCHAR NOT NULL,
    n_members    INTEGER NOT NULL,
    n_found      INTEGER NOT NULL,
    missing      VARCHAR[],
    PRIMARY KEY (run_id, gene_set)
);

-- One score a (run, sample, tile, gene set); the views prompt_results and
-- prompt_results_all join them with samples and runs.
CREATE TABLE prompt_scores (
    run_id      VARCHAR NOT NULL,
    sample_id   VARCHAR NOT NULL,
    tile_index  INTEGER,
    gene_set    VARCHAR NOT NULL,
    score       DOUBLE,
    dispersion  DOUBLE,
    effective_k DOUBLE
);

-- Raw ssGSEA ES of each library sample, per gene-set membership and library version.
-- A lookup names the version it wants, so a library change is a cache miss, never a stale hit.
CREATE TABLE library_scores (
    members_hash    VARCHAR NOT NULL,
    library_version BIGINT NOT NULL,
    sample_id       VARCHAR NOT NULL,
    es              DOUBLE NOT NULL,
    PRIMARY KEY (members_hash, library_version, sample_id)
);
