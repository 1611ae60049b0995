"""Executes notebooks top to bottom, headless, with nbclient; fails on the first error.

    python scripts/run_notebooks.py NOTEBOOK...

Notebooks are committed without outputs: one that has any is an error. The executed copies
are not written back.
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError


def main(paths):
    failed = 0
    for path in map(Path, paths):
        notebook = nbformat.read(path, as_version=4)
        dirty = [i for i, cell in enumerate(notebook.cells)
                 if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)]
        if dirty:
            print(f"{path}: cells {dirty} have outputs; commit notebooks without outputs", file=sys.stderr)
            failed += 1
            continue
        client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except CellExecutionError as error:
            print(f"{path}: {error}", file=sys.stderr)
            failed += 1
            continue
        printed = [o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for o in cell.outputs if o.get("output_type") == "stream"]
        print(f"{path}: ran {len(notebook.cells)} cells")
        for text in printed:
            print("  " + text.rstrip().replace("\n", "\n  "))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
