"""Candidates: what the lab compares and tunes.

A candidate is an optimizer's registry name, optionally followed by a
learning-rate schedule and by callbacks, joined with `+`:

    adam              Adam at a constant rate
    adam+step         Adam with step decay (`step_decay` is accepted too)
    adam+time_based   Adam with time-based decay η₀ / (1 + k·epoch)
    adam+plateau      Adam with performance-based decay (reduce on plateau)
    nag+one_cycle     Nesterov momentum under the one-cycle policy
    adam+cosine+plateau

A candidate ending in `@default` (`prodigy@default`) is not searched: it
runs its defaults only, as a method that tunes itself would be used (the
self-tuning track of AlgoPerf). `optlab tune` runs no trial for it and
reports its tuning cost as none, beside the searched candidates' cost.

The schedule is any entry of the schedule registry that has
`fit_arguments` (every one but the compositions); a trailing `_decay` in its
name is optional. Callbacks come from `keras_optlab.callbacks.registry`.
The canonical name puts the optimizer first, then the schedule, then the
callbacks in the order given: `adam+plateau+step` is `adam+step+plateau`.

Hyperparameter names: the optimizer's keep their own (`learning_rate`,
`beta_1`); a schedule's and a callback's are prefixed with its name
(`step.factor`, `plateau.patience`), since both may have a `factor`. A
switching optimizer moved by a callback (`adam_then_sgd`) has `switch.at`:
when it switches, as a fraction of the run (see `switch_epoch_at`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

from keras_optlab.lab.errors import UsageError

SEPARATOR = "+"
UNTUNED_SUFFIX = "@default"


def _optimizer_registry():
    from keras_optlab.optimizers import registry

    return registry


def _schedule_registry():
    from keras_optlab.schedules import registry

    return registry


def _callback_registry():
    from keras_optlab.callbacks import registry

    return registry


# A switching optimizer with neither a `switch_step` nor a criterion of its
# own (`adam_then_sgd`) is moved to its second phase by a `SwitchOptimizer`
# callback. When it switches is a hyperparameter of the candidate,
# `switch.at`: the fraction of the run's epochs after which it switches. It
# is tuned like any other (the callback is rebuilt for each run, so a new
# value compiles nothing); its default 0.5 is the end of the middle epoch.
SWITCH_AT = "switch.at"
SWITCH_AT_DEFAULT = 0.5


def switch_epoch_at(fraction: float, epochs: int) -> int:
    """The 1-based epoch at whose end a run of `epochs` epochs switches:
    `floor(fraction · epochs)`, kept within 1 and `epochs`."""
    return min(epochs, max(1, int(fraction * epochs)))


def default_switch_epoch(epochs: int) -> int:
    """Where a switching optimizer with neither a `switch_step` nor a
    criterion of its own (`adam_then_sgd`) switches when neither an epoch
    nor `switch.at` is given: at the end of the middle epoch,
    `max(1, epochs // 2)` (1-based)."""
    return switch_epoch_at(SWITCH_AT_DEFAULT, epochs)


def _moved_by_callback(optimizer: Any) -> bool:
    """Whether `optimizer` is a switching optimizer with no `switch_step`,
    which a `SwitchOptimizer` callback moves to its second phase."""
    from keras_optlab.optimizers import SwitchingOptimizer

    return isinstance(optimizer, SwitchingOptimizer) and optimizer.switch_step is None


@functools.lru_cache(maxsize=None)
def _switched_by_callback(optimizer_name: str) -> bool:
    """`_moved_by_callback` of the registry's `optimizer_name` built with
    its defaults."""
    return _moved_by_callback(_optimizer_registry().get(optimizer_name))


def tunable_schedules() -> list[str]:
    """Schedule names that can follow an optimizer in a candidate."""
    registry = _schedule_registry()
    return [n for n in registry.list_schedules() if registry.info(n).fit_arguments is not None]


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One parsed candidate.

    Attributes:
        optimizer: The optimizer's registry name.
        schedule: The schedule's registry name, or `None` (constant rate).
        callbacks: Callback registry names, in order.
        untuned: Run at its defaults, with no search (`@default`).
    """

    optimizer: str
    schedule: str | None = None
    callbacks: tuple[str, ...] = ()
    untuned: bool = False

    @property
    def name(self) -> str:
        """The canonical text, such as `adam+step+plateau` or
        `prodigy@default`."""
        parts = [self.optimizer, *([self.schedule] if self.schedule else []), *self.callbacks]
        return SEPARATOR.join(parts) + (UNTUNED_SUFFIX if self.untuned else "")

    def __str__(self) -> str:
        return self.name

    def search_space(
        self, learning_rate_range: tuple[float, float] | None = None
    ) -> dict[str, Any]:
        """Every tunable hyperparameter, by name (see the module), with its
        range and default, as the registries declare them.

        Args:
            learning_rate_range: `(low, high)` replacing the optimizer's
                learning-rate range (still log-uniform; the default is the
                registry's suggestion, clipped into the range). Defaults to
                `None`.
        """
        from keras_optlab import search_space as space

        dimensions = dict(_optimizer_registry().info(self.optimizer).search_space)
        if learning_rate_range is not None:
            low, high = learning_rate_range
            default = min(max(dimensions["learning_rate"].default, low), high)
            dimensions["learning_rate"] = space.LogUniform(low, high, default=default)
        if _switched_by_callback(self.optimizer):
            dimensions[SWITCH_AT] = space.Uniform(0.1, 0.9, default=SWITCH_AT_DEFAULT)
        if self.schedule:
            for key, dimension in _schedule_registry().info(self.schedule).search_space.items():
                dimensions[f"{self.schedule}.{key}"] = dimension
        for callback in self.callbacks:
            for key, dimension in _callback_registry().info(callback).search_space.items():
                dimensions[f"{callback}.{key}"] = dimension
        return dimensions

    def defaults(self) -> dict[str, Any]:
        """The untuned setting: each hyperparameter at its registry default."""
        return {name: d.default for name, d in self.search_space().items()}

    def build(
        self,
        hyperparameters: Mapping[str, Any],
        steps_per_epoch: int,
        epochs: int,
        switch_epoch: int | None = None,
    ) -> tuple[Any, list[Any]]:
        """The optimizer and the callbacks of one run.

        Args:
            hyperparameters: Values by name; missing ones take their default.
            steps_per_epoch: Optimizer steps in one epoch (schedules count
                steps).
            epochs: Length of the run.
            switch_epoch: For a switching optimizer with neither a
                `switch_step` nor a criterion of its own (`adam_then_sgd`):
                the 1-based epoch at whose end a `SwitchOptimizer` callback
                moves it to its second phase. Defaults to `None`: the epoch
                that the hyperparameter `switch.at` gives
                (`switch_epoch_at`), at its default 0.5 the middle one.

        Returns:
            `(optimizer, callbacks)`.
        """
        from keras_optlab.callbacks import SwitchOptimizer
        from keras_optlab.optimizers import Steered, lr_scale_of

        values = {**self.defaults(), **dict(hyperparameters)}
        own = {k: v for k, v in values.items() if "." not in k}
        rate = float(own["learning_rate"])
        if self.schedule:
            entry = _schedule_registry().info(self.schedule)
            params = _prefixed(values, self.schedule)
            own["learning_rate"] = entry.factory(
                **entry.fit_arguments(rate, steps_per_epoch, epochs, **params)
            )
        optimizer = _optimizer_registry().get(self.optimizer, **own)
        callbacks = []
        if _moved_by_callback(optimizer):
            at = (
                switch_epoch_at(float(values.get(SWITCH_AT, SWITCH_AT_DEFAULT)), epochs)
                if switch_epoch is None else switch_epoch
            )
            callbacks.append(SwitchOptimizer(at_epoch=at - 1))
        for name in self.callbacks:
            entry = _callback_registry().info(name)
            if entry.needs_lr_scale and self.schedule and lr_scale_of(optimizer) is None:
                # A Keras optimizer driven by a schedule has no variable a
                # callback could lower; Steered gives it one.
                optimizer = Steered(optimizer)
            callbacks.append(entry.factory(**entry.fit_arguments(epochs, **_prefixed(values, name))))
        if isinstance(optimizer, _schedule_free_classes()):
            # Validated, and left after training, at the average x, where
            # the method's authors evaluate (see ScheduleFreeEval).
            callbacks.append(_schedule_free_eval()())
        return optimizer, callbacks


def _schedule_free_classes() -> tuple[type, ...]:
    from keras_optlab.optimizers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD

    return (ScheduleFreeSGD, ScheduleFreeAdamW)


def _schedule_free_eval() -> type:
    from keras_optlab.callbacks.schedule_free import ScheduleFreeEval

    return ScheduleFreeEval


def _prefixed(values: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    head = prefix + "."
    return {k[len(head):]: v for k, v in values.items() if k.startswith(head)}


def _schedule_name(part: str) -> str | None:
    names = tunable_schedules()
    for name in (part, part.removesuffix("_decay")):
        if name in names:
            return name
    return None


def parse_candidate(text: str) -> Candidate:
    """Parses `optimizer[+schedule][+callback...][@default]`.

    Raises:
        UsageError: Naming the unknown or misplaced part and listing the
            known names.
    """
    if not isinstance(text, str):
        raise UsageError(f"A candidate must be a string. Received: {text!r}")
    body, marker, rest = text.strip().lower().partition("@")
    if marker and rest.strip() != UNTUNED_SUFFIX[1:]:
        raise UsageError(
            f"Candidate {text!r}: after '@' only 'default' may follow (a candidate run at its "
            f"defaults, with no search, such as prodigy{UNTUNED_SUFFIX})."
        )
    parts = [part.strip() for part in body.split(SEPARATOR)]
    if not text.strip() or any(not part for part in parts):
        raise UsageError(
            f"Candidate {text!r} has an empty part; write optimizer[+schedule][+callback], "
            "such as adam+step or adam+plateau."
        )
    registry = _optimizer_registry()
    optimizers = registry.list_optimizers()
    if parts[0] not in optimizers:
        try:  # an alias, such as TensorFlow Addons' `lazyadam`
            parts[0] = registry.info(parts[0]).name
        except ValueError:
            pass
    if parts[0] not in optimizers:
        raise UsageError(
            f"Unknown candidate {text!r}: {parts[0]!r} is not an optimizer. "
            f"Known optimizers: {', '.join(optimizers)}."
        )
    schedules, callbacks = tunable_schedules(), _callback_registry().list_callbacks()
    schedule, chosen = None, []
    for part in parts[1:]:
        named = _schedule_name(part)
        if named is not None:
            if schedule is not None:
                raise UsageError(
                    f"Candidate {text!r} names two schedules ({schedule}, {named}); "
                    "a candidate has at most one."
                )
            schedule = named
        elif part in callbacks:
            if part in chosen:
                raise UsageError(f"Candidate {text!r} names the callback {part!r} twice.")
            chosen.append(part)
        elif part in _schedule_registry().list_schedules():
            raise UsageError(
                f"Candidate {text!r}: the schedule {part!r} is built from other "
                f"schedules and cannot follow an optimizer. Schedules: {', '.join(schedules)}."
            )
        elif part in optimizers:
            raise UsageError(
                f"Candidate {text!r} names two optimizers; for a switch from one to "
                "the other use a switching optimizer such as adam_then_sgd or swats."
            )
        else:
            raise UsageError(
                f"Unknown candidate {text!r}: {part!r} is neither a schedule nor a callback. "
                f"Schedules: {', '.join(schedules)}. Callbacks: {', '.join(callbacks)}."
            )
    return Candidate(parts[0], schedule, tuple(chosen), untuned=bool(marker))


def parse_candidates(texts: Sequence[str], argument: str = "candidates") -> list[Candidate]:
    """Parses each text; at least one, and no candidate twice."""
    if isinstance(texts, str):
        texts = [texts]
    parsed = [parse_candidate(text) for text in texts]
    if not parsed:
        raise UsageError(f"Argument `{argument}` must name at least one candidate.")
    names = [c.name for c in parsed]
    if len(set(names)) != len(names):
        raise UsageError(f"Argument `{argument}` names one candidate twice: {', '.join(names)}.")
    return parsed
