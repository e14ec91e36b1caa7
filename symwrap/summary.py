"""What a wrapped model is made of: its parameter counts (peft's ``print_trainable_parameters`` wording) and a
table of the backbone and the strategy's own modules."""

from __future__ import annotations

from torch import nn

__all__ = ["ParameterCount", "count_parameters", "summary", "trainable_parameters_line"]


class ParameterCount(tuple):
    """``(trainable, total)`` parameter counts of a module (each shared tensor counted once)."""

    __slots__ = ()

    def __new__(cls, trainable: int, total: int) -> ParameterCount:
        return super().__new__(cls, (trainable, total))

    @property
    def trainable(self) -> int:
        return self[0]

    @property
    def total(self) -> int:
        return self[1]


def count_parameters(module: nn.Module) -> ParameterCount:
    """Trainable and total parameter counts of ``module``; lazy (uninitialised) parameters count as 0."""
    trainable = total = 0
    for parameter in module.parameters():  # .parameters() already yields a shared tensor once
        if isinstance(parameter, nn.parameter.UninitializedParameter):
            continue
        total += parameter.numel()
        if parameter.requires_grad:
            trainable += parameter.numel()
    return ParameterCount(trainable, total)


def trainable_parameters_line(module: nn.Module) -> str:
    """``trainable params: 294,912 || all params: 124,734,720 || trainable%: 0.2364`` (peft's wording)."""
    count = count_parameters(module)
    share = 100 * count.trainable / count.total if count.total else 0.0
    return f"trainable params: {count.trainable:,d} || all params: {count.total:,d} || trainable%: {share:.4f}"


def summary(model: nn.Module) -> str:
    """One row per direct child of ``model`` (the backbone and each of the strategy's modules): its name, class,
    trainable and total parameters; then the totals. Parameters held directly by ``model`` get a row too."""
    rows = []
    for name, child in model.named_children():
        count = count_parameters(child)
        rows.append((name, type(child).__name__, count.trainable, count.total))
    own = [p for _, p in model.named_parameters(recurse=False)
           if not isinstance(p, nn.parameter.UninitializedParameter)]
    if own:
        rows.append(("(own)", "Parameter", sum(p.numel() for p in own if p.requires_grad),
                     sum(p.numel() for p in own)))
    total = count_parameters(model)
    header = ("module", "class", "trainable", "parameters")
    cells = [(n, c, f"{t:,d}", f"{a:,d}") for n, c, t, a in rows]
    cells.append(("total", type(model).__name__, f"{total.trainable:,d}", f"{total.total:,d}"))
    widths = [max(len(header[i]), *(len(row[i]) for row in cells)) for i in range(4)]

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(r) for r in cells[:-1]), rule, line(cells[-1])])
