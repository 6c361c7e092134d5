"""Full-size copies and memory traffic in each benchmarked optimizer's
compiled update.

Run: `KERAS_BACKEND=jax PYTHONPATH=. .venv/bin/python bench/bench_copies.py`
(or through `make bench`, which prints the counts beside the timings).

XLA copies a donated slot at every step when a loop other than the one that
writes the slot's new value reads its old value, and XLA fuses cheap
producers into every consumer, so one innocent expression can make a later
loop read an old slot. Such a copy is as expensive as another pass over the
slot, and it is invisible in the Python code. This bench compiles the same
update `bench_optimizers` times (two variables of its size, gradients passed
in as arguments, the state donated on JAX as the trainer does; TensorFlow's
`jit_compile=True` function updates its variables in place) and counts, in
the optimised HLO, the copies of arrays of that size. Nothing runs; the
counts do not depend on the machine's load.

It also counts the update's memory traffic: the full-size arrays each loop
of the compiled update reads and writes. XLA:CPU fuses elementwise work
into loops but gives each result array its own loop (no multi-output
fusion), and a reduction is a loop of its own; an optimizer's step on
large variables is bound by memory traffic, so the ratio of two cases'
counts is the floor under the ratio of their times. Keras `Adam` moves 10
arrays per variable (the two moments: 2 read and 1 written each; the
weight: 3 read and 1 written). A `select` on a phase flag is counted as
reading both sides, so a phase that leaves a slot unchanged may move less
than its count.
"""

from __future__ import annotations

import re
import sys

from bench_optimizers import SIZE, jax_update, make_optimizers

VARIABLES = 2


def count_full_copies(hlo_text: str, size: int) -> int:
    """Copies of rank-1 float32 arrays of `size` elements in the entry
    computation of an optimised HLO module's text."""
    entry = hlo_text.split("\nENTRY ", 1)[-1]
    return len(re.findall(rf"= f32\[{size}\]\{{0\}} copy\(", entry))


_COMPUTATION = re.compile(r"^(ENTRY )?%(\S+) \(.*\{$")
_INSTRUCTION = re.compile(r"^\s+(?:ROOT )?%(\S+) = (\([^=]*?\)|\S+) ([\w-]+)\((.*?)\)(.*)$")


def _computations(hlo_text: str) -> tuple[dict[str, list[tuple]], str]:
    """Name -> instructions `(name, shape, opcode, operands, attributes)` of
    each computation in an optimised HLO module's text, and the entry's
    name."""
    computations, entry, current = {}, "", None
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            current = computations.setdefault(header.group(2), [])
            entry = header.group(2) if header.group(1) else entry
            continue
        instruction = _INSTRUCTION.match(line)
        if instruction and current is not None:
            name, shape, opcode, operands, attributes = instruction.groups()
            # A parameter's operand is its index ("3"); others name instructions.
            named = [operands] if opcode == "parameter" else re.findall(r"%([\w.-]+)", operands)
            current.append((name, shape, opcode, named, attributes))
    return computations, entry


def _branches(attributes: str) -> list[str]:
    """The computations a conditional's attributes name, in either form:
    `branch_computations={%a, %b}` or `true_computation=%a,
    false_computation=%b`."""
    listed = re.search(r"branch_computations=\{([^}]*)\}", attributes)
    if listed:
        return re.findall(r"%([\w.-]+)", listed.group(1))
    return re.findall(r"(?:true|false)_computation=%([\w.-]+)", attributes)


def _sliced_operands(computation: list[tuple], full: str) -> set[int]:
    """Indices of a fused computation's parameters that are read only
    through slices smaller than `full`: a loop reads a few elements of such
    an operand, not the array (an ordering term such as
    `one_after(m.flatten()[0])`)."""
    parameters = {name: int(operands[0]) for name, _, opcode, operands, _ in computation
                  if opcode == "parameter"}
    users: dict[str, list[tuple[str, str]]] = {name: [] for name in parameters}
    for _, shape, opcode, operands, _ in computation:
        for operand in operands:
            if operand in users:
                users[operand].append((opcode, shape))
    return {
        parameters[name]
        for name, uses in users.items()
        if uses and all(op == "slice" and not shape.startswith(full) for op, shape in uses)
    }


def count_full_traffic(hlo_text: str, size: int) -> tuple[int, int]:
    """Full-size float32 arrays that the compiled update's loops read and
    write: for each loop (a fusion or a copy) of the entry computation, its
    full-size operands (reads; not those it reads only a slice of) and
    full-size results (writes). The second number adds, for each
    conditional, its most expensive branch (SWATS' projection runs in one;
    the other is empty). A loop reads each operand once and writes each
    result once, so on a step bound by memory
    traffic, as an optimizer's is, this count is the step's cost."""
    full = f"f32[{size}]"
    computations, entry = _computations(hlo_text)

    def traffic(name: str) -> tuple[int, int]:
        shapes = {}
        own, branches = 0, 0
        for instruction, shape, opcode, operands, attributes in computations.get(name, []):
            shapes[instruction] = shape
            if opcode in ("fusion", "copy"):
                called = re.search(r"calls=%([\w.-]+)", attributes)
                fused = computations.get(called.group(1), []) if called else []
                sliced = _sliced_operands(fused, full)
                reads = sum(
                    shapes.get(operand, "").startswith(full) and index not in sliced
                    for index, operand in enumerate(operands)
                )
                own += reads + shape.count(full)
            elif opcode == "conditional":
                branches += max((sum(traffic(b)) for b in _branches(attributes)), default=0)
        return own, branches

    own, branches = traffic(entry)
    return own, own + branches


def _hlo_text(optimizer, variables, gradients) -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        jitted = jax.jit(jax_update(optimizer), donate_argnums=(0, 1))
        lowered = jitted.lower(
            [v.value for v in optimizer.variables], [v.value for v in variables], gradients
        )
        return lowered.compile().as_text()
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def step(gradients):
        optimizer.apply(gradients, variables)
        return optimizer.iterations

    return step.experimental_get_compiler_ir(gradients)(stage="optimized_hlo")


def analyse_backend() -> dict[str, dict[str, float]]:
    """Per case and per variable: full-size copies, and full-size arrays
    the update's loops read and write (`count_full_traffic`), without and
    with the most expensive branch of each conditional."""
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    results = {}
    for name, (optimizer, phase) in make_optimizers().items():
        variables = [
            keras.Variable(rng.normal(size=(SIZE,)).astype("float32")) for _ in range(VARIABLES)
        ]
        optimizer.build(variables)
        if phase is not None:
            optimizer.phase.assign(phase)
        gradients = [
            keras.ops.convert_to_tensor(rng.normal(size=(SIZE,)).astype("float32"))
            for _ in range(VARIABLES)
        ]
        text = _hlo_text(optimizer, variables, gradients)
        arrays, with_branches = count_full_traffic(text, SIZE)
        results[name] = {
            "copies": count_full_copies(text, SIZE) / VARIABLES,
            "arrays": arrays / VARIABLES,
            "arrays_with_branches": with_branches / VARIABLES,
        }
    return results


def main() -> int:
    print(f"{'case':45} {'copies':>6} {'arrays':>7} {'with branches':>14}  (per variable)")
    for name, entry in analyse_backend().items():
        print(f"{name:45} {entry['copies']:6.1f} {entry['arrays']:7.1f} "
              f"{entry['arrays_with_branches']:14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
