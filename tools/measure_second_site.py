"""Transfer and adaptation on a demo world's second hospital, as the tests measure them, for either world.

Writes the small demo of ``--world`` and its second site (:data:`hquery.demo.SECOND_SITE`), serves heads fitted
on the first site (40 epochs), then prints ``evaluate_transfer`` (3 folds, HistoPrism included) and ``evaluate_adaptation``
(0, 25 and 50% of the site's patients, 2 draws) over the world's drawn Hallmark sets, each beside the ridge+type
floor of the same run. World A's numbers are those ``tests/evaluation/`` asserts on.

Usage::

    python tools/measure_second_site.py --world B [--stain macenko] [--out /tmp/second-site]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from hquery.demo import SECOND_SITE, WORLDS, generate_demo_cohort
from hquery.evaluation.adapt import evaluate_adaptation
from hquery.evaluation.transfer import evaluate_transfer
from hquery.ingest import ingest_cohort
from hquery.ingest.image_encoders import parse_image_encoder
from hquery.pipelines.demo import ingest_demo_cohort
from hquery.training import AlignmentConfig, train_alignment

QUICK = AlignmentConfig(max_epochs=40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", choices=sorted(WORLDS), default="A")
    parser.add_argument("--out", type=Path, help="Where the cohorts and the store go [default: a temporary folder].")
    parser.add_argument("--stain", choices=["macenko", "reinhard", "none"], default="none",
                        help="Stain-normalise both sites' tiles before he-features embeds them.")
    args = parser.parse_args()
    root = args.out or Path(tempfile.mkdtemp(prefix="second-site-"))
    first = generate_demo_cohort(root / "first", size="small", world=args.world)
    site = generate_demo_cohort(root / "site2", size="small", world=args.world, site=SECOND_SITE)
    encoder = parse_image_encoder("he-features").with_stain(args.stain).text
    store = ingest_demo_cohort(root / "store", first, encoder, spots=False)
    train_alignment(store, config=QUICK, workers=1)
    ingest_cohort(store, site.cohort_manifest, expression=site.cohort_expression, name="site2", encoder=encoder)
    drawn = WORLDS[args.world].drawn_hallmarks()

    transfer = evaluate_transfer(store, ["demo"], "site2", folds=3, config=QUICK, histoprism=True)
    means = transfer.means(drawn)
    print(f"world {args.world}, stain normalisation {args.stain}: R² over its {len(drawn)} drawn sets, "
          "transfer vs in-cohort")
    for route in means["transfer"]:
        print(f"  {route:10s} {means['transfer'][route]['r2_calibrated']:7.3f} "
              f"{means['in_cohort'][route]['r2_calibrated']:7.3f}")
    recall = {s: transfer.recall[s]["aligned"]["he_to_rna"]["recall@10"] for s in transfer.recall}
    print(f"  H&E->RNA R@10 {recall['transfer']:.3f} vs {recall['in_cohort']:.3f}; ridge (transfer) "
          f"{transfer.recall['transfer']['ridge']['he_to_rna']['recall@10']:.3f}")

    report = evaluate_adaptation(store, "site2", (0, 0.25, 0.5), repeats=2, epochs=20)
    print(f"world {args.world}: adaptation, mean over 2 draws ({report.n_test_patients} test patients)")
    for metric, starts, sets in (("he_to_rna:recall@10", ("warm", "scratch", "ridge", "chance"), None),
                                 ("r2", ("warm", "scratch", "ridge_type"), drawn)):
        for start in starts:
            curve = report.curve(start, metric, sets)
            print(f"  {metric:20s} {start:10s} " + "  ".join(f"{f:g}: {v[0]:.3f}" for f, v in curve.items()))
    retained = report.curve("warm", "source:he_to_rna:recall@10")
    print("  the first site's R@10 after adapting (its own pairs, retention) "
          + "  ".join(f"{f:g}: {v[0]:.3f}" for f, v in retained.items()))


if __name__ == "__main__":
    main()
