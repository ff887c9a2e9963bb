"""Errors a user can act on. The CLI prints them as one line."""


class TflmPatchError(Exception):
    """Base class: the message is the whole story, shown on one line."""

    exit_code = 2


class ModelError(TflmPatchError):
    """The input file is not a model we can read or handle."""


class PlanError(TflmPatchError):
    """The requested patch plan is impossible for this model."""


class NoGainError(TflmPatchError):
    """No patch plan lowers the peak memory: the model is left unchanged."""

    exit_code = 3


class VerifyError(TflmPatchError):
    """The patched model does not reproduce the original's outputs."""

    exit_code = 4
