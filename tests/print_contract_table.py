"""Print the contract table of docs/contract.md: for every strategy and input kind of the contract suite,
whether save/load is bit-exact, and the equivariance error (the largest over every copy where the model
promises exactness, the mean otherwise) next to the bare backbone's, in float32 and float64.

    python tests/print_contract_table.py
"""

import dataclasses
import sys
import tempfile
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from contract_cases import KINDS  # noqa: E402

import symwrap  # noqa: E402
from symwrap.errors import SymwrapError  # noqa: E402
from symwrap.metrics import assert_equivariant, equivariance_error  # noqa: E402
from symwrap.strategies import get_strategy  # noqa: E402

warnings.simplefilter("ignore")

def hints(strategy, kind):
    fields = {f.name for f in dataclasses.fields(get_strategy(strategy).config_class)}
    return {k: v for k, v in kind.hints.items() if k in fields}

def seeded(model, x):
    torch.manual_seed(11)
    with torch.no_grad():
        return model.output_action.flatten(model(x))

rows = []
for strategy in symwrap.list_strategies():
    for kind in KINDS:
        cells = [strategy, kind.name]
        for dtype in (torch.float32, torch.float64):
            torch.manual_seed(0)
            try:
                model = symwrap.wrap(kind.backbone().to(dtype), group=kind.group, strategy=strategy,
                                     input=kind.input, output=kind.output, **hints(strategy, kind)).eval()
            except SymwrapError as error:
                cells.append(f"refused ({type(error).__name__})")
                break
            x = kind.data(dtype)
            with tempfile.TemporaryDirectory() as d:
                model.save_pretrained(Path(d) / "m")
                torch.manual_seed(1)
                loaded = symwrap.load(Path(d) / "m", kind.backbone().to(dtype)).eval()
                same = torch.equal(seeded(model, x), seeded(loaded, x))
            exact = model.is_exact(x)
            if exact:
                err = assert_equivariant(model, x, kind.group, input=kind.input, output=kind.output,
                                         tolerance=1e9)["max"]
                label = f"exact, max {err:.1e}"
            else:
                err = equivariance_error(model, x, kind.group, input=kind.input, output=kind.output)
                label = f"approx., mean {err:.2g}"
            bare = equivariance_error(model.backbone, x, kind.group, input=kind.input, output=kind.output)
            cells.append(f"{'bit-exact' if same else 'DIFFERS'}; {label} (bare {bare:.2g})")
        rows.append(cells)
print("| strategy | input | float32: save/load; equivariance error (bare backbone) | float64 |")
print("|---|---|---|---|")
for r in rows:
    r = r + [""] * (4 - len(r))
    print("| " + " | ".join(r) + " |")
