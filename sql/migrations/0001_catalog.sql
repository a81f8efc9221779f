-- hquery catalog, schema version 1.
-- Everything that is not a vector lives here; vectors and expression live in
-- Lance tables whose committed versions are recorded in lance_tables.

CREATE TABLE settings (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

CREATE TABLE ingests (
    ingest_id        VARCHAR PRIMARY KEY,
    cohort           VARCHAR NOT NULL,
    manifest_path    VARCHAR NOT NULL,
    expression_path  VARCHAR,
    spots_path       VARCHAR,
    units            VARCHAR,
    image_encoder    VARCHAR,
    rna_encoder      VARCHAR,
    n_samples_new    INTEGER NOT NULL,
    n_samples_same   INTEGER NOT NULL,
    n_tiles          BIGINT NOT NULL,
    genes_matched    INTEGER,
    genes_dropped    INTEGER,
    lance_versions   JSON,
    started_at       TIMESTAMP NOT NULL,
    finished_at      TIMESTAMP NOT NULL
);

CREATE TABLE cohorts (
    cohort        VARCHAR PRIMARY KEY,
    manifest_path VARCHAR NOT NULL,
    created_at    TIMESTAMP NOT NULL
);

CREATE TABLE samples (
    sample_id      VARCHAR PRIMARY KEY,
    patient_id     VARCHAR NOT NULL,
    cohort         VARCHAR NOT NULL,
    cancer_type    VARCHAR,
    has_slide      BOOLEAN NOT NULL,
    has_expression BOOLEAN NOT NULL,
    clinical       JSON,
    content_hash   VARCHAR NOT NULL,
    ingest_id      VARCHAR NOT NULL
);

CREATE TABLE slides (
    sample_id     VARCHAR PRIMARY KEY,
    source_path   VARCHAR NOT NULL,
    source_kind   VARCHAR NOT NULL CHECK (source_kind IN ('tiles', 'wsi', 'features')),
    content_hash  VARCHAR NOT NULL,
    width         BIGINT,
    height        BIGINT,
    tile_size     INTEGER,
    magnification DOUBLE,
    mpp           DOUBLE,
    n_tiles       INTEGER NOT NULL,
    ingest_id     VARCHAR NOT NULL
);

-- Level-0 pixel coordinates of each tile's top-left corner.
CREATE TABLE tiles (
    sample_id  VARCHAR NOT NULL,
    tile_index INTEGER NOT NULL,
    x          BIGINT NOT NULL,
    y          BIGINT NOT NULL,
    PRIMARY KEY (sample_id, tile_index)
);

-- The gene universe: position is the column of every expression vector in Lance.
CREATE TABLE genes (
    position INTEGER PRIMARY KEY,
    symbol   VARCHAR NOT NULL UNIQUE
);

CREATE TABLE gene_aliases (
    alias  VARCHAR PRIMARY KEY,
    symbol VARCHAR NOT NULL,
    source VARCHAR NOT NULL
);

CREATE TABLE gene_sets (
    name         VARCHAR PRIMARY KEY,
    collection   VARCHAR NOT NULL,
    source       VARCHAR NOT NULL,
    description  VARCHAR,
    members      VARCHAR[] NOT NULL,
    members_hash VARCHAR NOT NULL,
    added_at     TIMESTAMP NOT NULL
);

-- Frozen encoders (image and RNA) and trained models share one versioned shape.
CREATE TABLE encoders (
    version       VARCHAR PRIMARY KEY,
    kind          VARCHAR NOT NULL CHECK (kind IN ('image', 'rna')),
    spec          VARCHAR NOT NULL,
    params        JSON NOT NULL,
    dim           INTEGER NOT NULL,
    artifact_path VARCHAR,
    created_at    TIMESTAMP NOT NULL
);

CREATE TABLE models (
    version       VARCHAR PRIMARY KEY,
    name          VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,
    params        JSON NOT NULL,
    data_snapshot JSON,
    seed          BIGINT,
    metrics       JSON,
    artifact_path VARCHAR,
    created_at    TIMESTAMP NOT NULL
);

CREATE TABLE index_versions (
    version       VARCHAR PRIMARY KEY,
    model_version VARCHAR NOT NULL,
    kind          VARCHAR NOT NULL,
    path          VARCHAR NOT NULL,
    n_vectors     BIGINT NOT NULL,
    params        JSON,
    metrics       JSON,
    created_at    TIMESTAMP NOT NULL
);

-- The committed version of each Lance table. Readers open exactly this version;
-- anything newer on disk was written by an ingest that never committed.
CREATE TABLE lance_tables (
    name       VARCHAR PRIMARY KEY,
    kind       VARCHAR NOT NULL,
    encoder    VARCHAR,
    version    BIGINT NOT NULL,
    n_rows     BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE prompt_runs (
    run_id        VARCHAR PRIMARY KEY,
    created_at    TIMESTAMP NOT NULL,
    gene_set      VARCHAR NOT NULL,
    members_hash  VARCHAR NOT NULL,
    model_version VARCHAR,
    index_version VARCHAR,
    method        VARCHAR NOT NULL,
    level         VARCHAR NOT NULL,
    k             INTEGER,
    tau           DOUBLE,
    params        JSON
);

CREATE TABLE prompt_results (
    run_id      VARCHAR NOT NULL,
    sample_id   VARCHAR NOT NULL,
    tile_index  INTEGER,
    gene_set    VARCHAR NOT NULL,
    score       DOUBLE,
    dispersion  DOUBLE,
    effective_k DOUBLE
);
