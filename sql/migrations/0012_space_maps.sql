-- `hquery map-space`: a 2-D UMAP of slides and RNA profiles in one alignment model's shared space.
CREATE TABLE space_maps (
    map_id        VARCHAR PRIMARY KEY,
    created_at    TIMESTAMP NOT NULL,
    model_version VARCHAR NOT NULL,
    color         VARCHAR,
    params        JSON
);

CREATE TABLE space_coordinates (
    map_id    VARCHAR NOT NULL,
    sample_id VARCHAR NOT NULL,
    modality  VARCHAR NOT NULL,        -- slide | rna
    x         DOUBLE NOT NULL,
    y         DOUBLE NOT NULL
);
