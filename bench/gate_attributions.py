"""What feature attributions add to the gate, against the same gate without them, one run.

Two loans models (default architecture, as ``bench/train.py``'s whole-gate benchmark) are
judged on a 20k-row holdout by ``evaluate_candidate`` (recorded), once with
``explain_rows=0`` and once with the default (permutation importance on 5,000 rows x 17
features x 3 repeats, integrated gradients on 256 rows x 32 background rows x 8 steps, for
candidate and champion). Then the parts alone, and one instance's integrated gradients
against 16 background rows as the model server would ask for them.

Run ``python bench/gate_attributions.py`` (``--rows N`` for another holdout size).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _best(fn: object, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        timings.append(time.perf_counter() - start)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    from bench.train import two_versions
    from models.attributions import integrated_gradients_arrays
    from tasks.data.simulator import simulate
    from tasks.gate.evaluate import GateRules, _load_version, evaluate_candidate
    from tasks.gate.explain import explain_gate

    with tempfile.TemporaryDirectory() as home:
        registry, v1, v2 = two_versions(Path(home))
        holdout = simulate(args.rows, seed=3)
        with_explain = GateRules(slices=["region"])
        without = with_explain.model_copy(update={"explain_rows": 0})

        def gate(rules: GateRules) -> None:
            evaluate_candidate(registry, "bench", v2, holdout, rules, against=v1)

        gate(without)  # warm-up: first calls pay for lazy imports and allocations
        gate(with_explain)
        base = _best(lambda: gate(without), 3)
        full = _best(lambda: gate(with_explain), 3)
        candidate = _load_version(registry, "bench", v2)
        champion = _load_version(registry, "bench", v1)
        parts = _best(
            lambda: explain_gate(candidate, champion, holdout, with_explain, "roc_auc"), 3
        )
        pre = candidate.preprocessor
        one = pre.transform(holdout.iloc[:1])
        background = pre.transform(holdout.iloc[1:17])
        ig_one = _best(lambda: integrated_gradients_arrays(candidate.net, *one, *background), 50)
        registry.close()
    print(
        f"evaluate_candidate on {args.rows} rows (slices, latency probes, recorded, vs champion):"
    )
    print(f"  without attributions: {base:.2f} s")
    print(f"  with attributions:    {full:.2f} s  (+{full - base:.2f} s, x{full / base:.2f})")
    print(f"  explain_gate alone (candidate + champion): {parts:.2f} s")
    print(
        f"  one instance x 16 background x 16 steps IG (transformed arrays): {ig_one * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
