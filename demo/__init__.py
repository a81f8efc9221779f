"""The demo cohort: a synthetic world of slides and RNA with known programs, written as a user's files.

:func:`generate_demo_cohort` writes manifests, tiles and expression; the demo
run that ingests and trains on them is :func:`hquery.pipelines.demo.run_demo`.
"""

from hquery.demo.cohort import (
    DEMO_ENCODER,
    PROGRAMS,
    SECOND_SITE,
    SIZES,
    WORLDS,
    DemoFiles,
    Site,
    World,
    generate_demo_cohort,
)

__all__ = ["DEMO_ENCODER", "PROGRAMS", "SECOND_SITE", "SIZES", "WORLDS", "DemoFiles", "Site", "World",
           "generate_demo_cohort"]
