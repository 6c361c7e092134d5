"""`make bench`: every benchmark on TensorFlow (XLA) and JAX, one table.

Each backend runs in its own process (KERAS_BACKEND is read when keras is
imported); a backend whose package is not installed is left out, so the
same command runs on a machine with JAX alone (a GPU machine, say). The
child imports the bench modules beside this file and prints their raw
timings as JSON; the parent takes medians, forms the ratios against the
reference measured in the same process, prints one table (a goal per row)
and writes bench/results.json (to a temporary file first, then renamed).

    make bench                      # or: .venv/bin/python bench/run.py
    .venv/bin/python bench/run.py --repetitions 40
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
BACKENDS = ("tensorflow", "jax")
SECTIONS = ("optimizer.apply", "train step", "optlab compare")


def child(repetitions: int) -> None:
    sys.path[:0] = [str(HERE), str(HERE.parent)]
    import bench_compare
    import bench_copies
    import bench_engine
    import bench_optimizers
    import bench_traces
    import bench_train_step

    result = {
        "device": _device(),
        "optimizer.apply": {
            "times": bench_optimizers.run_backend(repetitions, warmup=3),
            "pairs": bench_optimizers.PAIRS,
        },
        "train step": {
            "times": bench_train_step.run_backend(repetitions),
            "pairs": bench_train_step.PAIRS,
        },
        "optlab compare": {
            "times": bench_compare.run_backend(),
            "pairs": bench_compare.PAIRS,
        },
        "traces": bench_traces.run_backend(),
        "compiled": bench_copies.analyse_backend(),
        "engine": bench_engine.run_backend(),
    }
    print("RESULT " + json.dumps(result))


def _device() -> str:
    """The device the backend computes on, in words."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.devices()[0]
        return f"{device.platform}: {device.device_kind}"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"gpu: {gpus[0].name}" if gpus else "cpu"


def available_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(b) is not None]


def measure(backend: str, repetitions: int) -> dict:
    environment = dict(os.environ, KERAS_BACKEND=backend, TF_CPP_MIN_LOG_LEVEL="2")
    completed = subprocess.run(
        [sys.executable, __file__, "--child", "--repetitions", str(repetitions)],
        env=environment, capture_output=True, text=True, check=False,
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("RESULT ")]
    if completed.returncode != 0 or not lines:
        sys.stderr.write(completed.stderr[-4000:])
        raise SystemExit(f"bench failed on {backend}")
    return json.loads(lines[-1][len("RESULT "):])


def summarise(raw: dict) -> dict:
    summary = {"device": raw["device"]}
    for section in SECTIONS:
        medians = {case: statistics.median(t) for case, t in raw[section]["times"].items()}
        summary[section] = {
            "median_ms": {case: 1e3 * value for case, value in medians.items()},
            "ratios": {
                f"{case} / {reference}": medians[case] / medians[reference]
                for case, reference, _ in raw[section]["pairs"]
            },
            "goals": {
                f"{case} / {reference}": goal for case, reference, goal in raw[section]["pairs"]
            },
        }
    summary["traces"] = raw["traces"]
    summary["copies"] = {case: entry["copies"] for case, entry in raw["compiled"].items()}
    summary["traffic"] = {
        case: entry["arrays_with_branches"] for case, entry in raw["compiled"].items()
    }
    summary["engine"] = raw["engine"]
    return summary


def print_table(results: dict) -> None:
    backends = list(results["backends"])
    for backend in backends:
        print(f"{backend}: {results['backends'][backend]['device']}")
    for section in SECTIONS:
        print(f"\n{section} (median ms; ratio to the reference measured beside it)")
        header = f"{'case / compared with':64}{'goal':>6}" + "".join(
            f"{b + ' ms':>14}{'ratio':>7}" for b in backends
        )
        print(header)
        first = results["backends"][backends[0]][section]
        for key in first["ratios"]:
            case = key.split(" / ")[0]
            goal = first["goals"][key]
            row = f"{key:64}{'' if goal is None else f'{goal:.2f}':>6}"
            for backend in backends:
                entry = results["backends"][backend][section]
                ratio = entry["ratios"][key]
                flag = "*" if goal is not None and ratio > goal else " "
                row += f"{entry['median_ms'][case]:14.2f}{ratio:6.2f}{flag}"
            print(row)
    print("\ntrain-function traces and compile time (8 epochs; switch at epoch 3, "
          "plateau reductions every epoch from the second)")
    print(f"{'backend':12}{'run':10}{'traces':>8}{'compile s':>11}{'epoch s':>9}")
    for backend in backends:
        for run in ("plain", "steered"):
            entry = results["backends"][backend]["traces"][run]
            print(f"{backend:12}{run:10}{entry['traces']:8d}"
                  f"{entry['compile_s']:11.2f}{entry['epoch_s']:9.3f}")
    print("\nfull-size copies per variable in the compiled optimizer.apply "
          "(each one costs a pass over the slot; cases with none are left out)")
    copied = [
        case for case in results["backends"][backends[0]]["copies"]
        if any(results["backends"][b]["copies"][case] for b in backends)
    ]
    print(f"{'case':64}" + "".join(f"{b:>14}" for b in backends))
    for case in copied:
        print(f"{case:64}" + "".join(
            f"{results['backends'][b]['copies'][case]:14.1f}" for b in backends))
    if not copied:
        print("(none)")
    print("\nmemory traffic: full-size arrays read and written per variable by the compiled "
          "update's loops\n(with each conditional's largest branch), and its ratio to the "
          "reference's; the time ratio divided by it")
    print(f"{'case / compared with':64}" + "".join(
        f"{b + ' arrays':>18}{'ratio':>7}{'time/arrays':>12}" for b in backends))
    first = results["backends"][backends[0]]["optimizer.apply"]
    for key in first["ratios"]:
        case, reference = key.split(" / ")
        row = f"{key:64}"
        for backend in backends:
            traffic = results["backends"][backend]["traffic"]
            ratio = traffic[case] / traffic[reference]
            time_ratio = results["backends"][backend]["optimizer.apply"]["ratios"][key]
            row += f"{traffic[case]:18.1f}{ratio:7.2f}{time_ratio / ratio:12.2f}"
        print(row)
    print("\nthe lab's trial engine: Adam runs of optlab tune's default workload (digits MLP, "
          "8 epochs), a fresh build per run against one compiled model reused")
    import bench_engine

    for backend in backends:
        print(f"{backend:12}{bench_engine.describe(results['backends'][backend]['engine'])}")
    print("\n* misses the goal; see docs/benchmarks.md")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=25)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(HERE / "results.json"))
    arguments = parser.parse_args()
    if arguments.child:
        child(arguments.repetitions)
        return 0
    results = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "repetitions": arguments.repetitions,
        "backends": {},
    }
    backends = available_backends()
    if not backends:
        raise SystemExit(f"None of the backends {BACKENDS} is installed.")
    for backend in backends:
        print(f"measuring {backend} ...", flush=True)
        results["backends"][backend] = summarise(measure(backend, arguments.repetitions))
    print_table(results)
    path = pathlib.Path(arguments.output)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(results, indent=2) + "\n")
    temporary.replace(path)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
