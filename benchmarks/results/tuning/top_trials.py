"""The k best completed trials of a study as tuned files, to train each again on other seeds before one
is chosen (a study's best value is one seed's final evaluation: the maximum of many noisy values).

    python benchmarks/results/tuning/top_trials.py K OUT_DIR <the rlgen.tune command's settings>

writes OUT_DIR/trial-<n>.yaml for each, for `python -m rlgen.train ... tuned=OUT_DIR/trial-<n>.yaml`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from optuna.trial import TrialState

from rlgen.tune import open_study, prepare
from rlgen.tuning_report import write_tuned


def main() -> None:
    k, out, settings = int(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    job = prepare(settings)
    study = open_study(job, 0)
    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
    for trial in done[:k]:
        write_tuned(study, job, out / f"trial-{trial.number}.yaml", trial)
        print(f"{out / f'trial-{trial.number}.yaml'}: value {trial.value:.2f}")


if __name__ == "__main__":
    main()
